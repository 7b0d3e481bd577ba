"""The document store: pytest-benchmark JSON run documents read, checked and keyed in one place.

One reader (:func:`read_document`, :func:`load_document`, :func:`load_documents` for a file or a
``--benchmark-storage`` folder), the key of a benchmark, the kind of a benchmark (a single-request
case or a serving load point) and the device a document names. The gate matches and pools what
this returns (gate/baseline.py); history and the report read through it. Every error is one line
(:class:`DocumentError`) that names the file and the fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SOURCE_KEY = "_moeperf_source"  # set by the loaders: the file a document came from

CASE = "case"  # a single-request case (benchmarks/test_deployment.py)
SERVING = "serving"  # a serving load point (benchmarks/test_serving.py)


class DocumentError(ValueError):
    """A baseline or run file that cannot be used; the message is one line and names the fix."""


# -- reading ------------------------------------------------------------------------------

RECORD_TYPES = ("session", "case", "failed")  # the record types of a results log (results_log.py)


def looks_like_results_log(text: str) -> bool:
    """Whether ``text`` reads as a results log (its first record is one): for the loaders of
    pytest-benchmark documents, to point at ``results LOG --json`` instead of a JSON error."""
    for line in text.splitlines():
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                return False
            return isinstance(rec, dict) and rec.get("type") in RECORD_TYPES
    return False


def _read_text(p: Path) -> str:
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise DocumentError(f"{p}: is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise DocumentError(f"{p}: not a text (UTF-8) file") from None
    except OSError as exc:
        raise DocumentError(f"{p}: cannot read ({exc.strerror or exc}); check the path and permissions") from None


def read_document(path: str | os.PathLike[str]) -> dict:
    """A pytest-benchmark JSON document's top level: an object with a ``benchmarks`` list (its
    entries are not checked: :func:`load_document` does). DocumentError (one line) if unusable."""
    p = Path(path)
    text = _read_text(p)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if looks_like_results_log(text):
            raise DocumentError(f"{p}: a results log (JSON lines), not a run; rebuild the run with python -m "
                                f"pytest_moeperf results {p} --json run.json and give run.json") from None
        raise DocumentError(f"{p}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); regenerate it "
                            f"with --benchmark-json or --benchmark-save") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise DocumentError(f"{p}: not a pytest-benchmark JSON document (no 'benchmarks' list); point at a file "
                            f"written by --benchmark-json or --benchmark-save")
    return doc


def validate_document(doc: Any, where: str) -> None:
    """pytest-benchmark JSON: an object with a ``benchmarks`` list of objects with a name."""
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise DocumentError(f"{where}: not a pytest-benchmark JSON document (no 'benchmarks' list); "
                            f"point at a file written by --benchmark-json or --benchmark-save")
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict) or not (bench.get("fullname") or bench.get("name")):
            raise DocumentError(f"{where}: benchmarks[{i}] has no 'fullname' or 'name'; "
                                f"regenerate the file with pytest-benchmark 5")
        if not isinstance(bench.get("extra_info", {}), dict):
            raise DocumentError(f"{where}: benchmarks[{i}].extra_info is not an object; regenerate the file")


def load_document(path: str | os.PathLike[str]) -> dict:
    """:func:`read_document` with every benchmark checked, and ``doc[SOURCE_KEY]`` = its file."""
    doc = read_document(path)
    validate_document(doc, str(path))
    doc[SOURCE_KEY] = str(path)
    return doc


def _run_files(folder: Path) -> list[Path]:
    # pytest-benchmark storage: <storage>/<machine-id>/NNNN_<commit>_<time>.json; sort like it does
    return sorted((p for p in folder.rglob("*.json") if p.is_file()), key=lambda p: (p.name, str(p.parent)))


def load_documents(path: str | os.PathLike[str], all_runs: bool = False) -> list[dict]:
    """A pytest-benchmark JSON file, or a storage folder (newest run by filename; all with ``all_runs``).

    Each document gets ``doc[SOURCE_KEY]`` = its file. Raises DocumentError (one line).
    """
    p = Path(path)
    if not p.exists():
        raise DocumentError(f"{p}: no such file or folder; give a pytest-benchmark JSON file or storage folder "
                            f"(e.g. baselines/h200)")
    if p.is_dir():
        files = _run_files(p)
        if not files:
            raise DocumentError(f"{p}: folder holds no *.json runs; save one with --benchmark-save "
                                f"--benchmark-storage={p}")
        return [load_document(f) for f in (files if all_runs else files[-1:])]
    return [load_document(p)]


def has_runs(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file or a folder holding at least one ``*.json``."""
    p = Path(path)
    return p.is_file() or (p.is_dir() and bool(_run_files(p)))


def storage_path(uri: str | None) -> Path | None:
    """pytest-benchmark's --benchmark-storage value as a local folder (None for non-file storage)."""
    if not uri:
        return None
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        return None
    return Path(uri)


# -- keys and kinds -------------------------------------------------------------------------

def bench_key(bench: Mapping[str, Any]) -> str:
    return str(bench.get("fullname") or bench.get("name"))


def extra_kind(extra_info: Mapping[str, Any] | None) -> str:
    """:data:`SERVING` for a serving load point's extra_info (it names its ``load_point``), else :data:`CASE`."""
    return SERVING if "load_point" in (extra_info or {}) else CASE


def benchmark_kind(bench: Mapping[str, Any]) -> str:
    """:data:`SERVING` or :data:`CASE`: what a document's benchmark entry measured."""
    return extra_kind(bench.get("extra_info"))


# -- the device a document names --------------------------------------------------------------

CPU = "the CPU"


def gpu_name(doc: Mapping[str, Any]) -> str | None:
    gpu = (doc.get("machine_info") or {}).get("gpu")
    if isinstance(gpu, Mapping):
        name = gpu.get("name")
        return str(name) if name else None
    return str(gpu) if isinstance(gpu, str) and gpu else None


def gpu_uuid(doc: Mapping[str, Any] | None) -> str | None:
    gpu = ((doc or {}).get("machine_info") or {}).get("gpu")
    return str(gpu["uuid"]) if isinstance(gpu, Mapping) and gpu.get("uuid") else None


def gpu_slug(name: str) -> str:
    """``"NVIDIA H200"`` -> ``"h200"``: the baselines/<gpu>/ folder name."""
    words = [w for w in name.lower().replace("-", " ").split() if w not in ("nvidia", "tesla", "geforce")]
    return words[0] if words else name.lower()


def _on_cpu(doc: Mapping[str, Any]) -> bool:
    """A run measured on the CPU: the suite's machine_info says so, or every benchmark's device does."""
    mi = doc.get("machine_info") if isinstance(doc.get("machine_info"), Mapping) else {}
    if str(mi.get("moeperf_device") or "").lower().startswith("cpu"):
        return True
    names = [((b.get("extra_info") or {}) if isinstance(b, Mapping) else {}).get("device_name")
             for b in (doc.get("benchmarks") or [])]
    names = [n for n in names if isinstance(n, str)]
    return bool(names) and all(n.lower().startswith("cpu") for n in names)


def device_name(doc: Mapping[str, Any]) -> str | None:
    """The GPU a run names, CPU for a CPU run, None when the document does not say."""
    return gpu_name(doc) or (CPU if _on_cpu(doc) else None)
