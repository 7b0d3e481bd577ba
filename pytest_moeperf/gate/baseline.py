"""Baselines: loading run documents, matching benchmarks, pooling runs, and the GPU identity checks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pytest_moeperf.metrics import schema
from pytest_moeperf.gate.config import BaselineError, GateConfig, GpuMismatchError
from pytest_moeperf.gate.statistics import _finite_list


# -- loading ----------------------------------------------------------------------------

SOURCE_KEY = "_moeperf_source"  # set by load_documents: the file a document came from


def _load_one(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror or exc}); check the path and permissions") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        from pytest_moeperf.results.results_log import looks_like_results_log

        if looks_like_results_log(text):
            raise BaselineError(f"{path}: a results log (JSON lines), not a run; rebuild the run with "
                                f"python -m pytest_moeperf results {path} --json run.json and give run.json") from None
        raise BaselineError(f"{path}: not JSON ({exc}); regenerate it with --benchmark-json or --benchmark-save") \
            from None
    validate_document(doc, str(path))
    doc[SOURCE_KEY] = str(path)
    return doc


def validate_document(doc: Any, where: str) -> None:
    """pytest-benchmark JSON: an object with a ``benchmarks`` list of objects with a name."""
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise BaselineError(f"{where}: not a pytest-benchmark JSON document (no 'benchmarks' list); "
                            f"point at a file written by --benchmark-json or --benchmark-save")
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict) or not (bench.get("fullname") or bench.get("name")):
            raise BaselineError(f"{where}: benchmarks[{i}] has no 'fullname' or 'name'; "
                                f"regenerate the file with pytest-benchmark 5")
        if not isinstance(bench.get("extra_info", {}), dict):
            raise BaselineError(f"{where}: benchmarks[{i}].extra_info is not an object; regenerate the file")


def _run_files(folder: Path) -> list[Path]:
    # pytest-benchmark storage: <storage>/<machine-id>/NNNN_<commit>_<time>.json; sort like it does
    return sorted((p for p in folder.rglob("*.json") if p.is_file()), key=lambda p: (p.name, str(p.parent)))


def load_documents(path: str | os.PathLike[str], all_runs: bool = False) -> list[dict]:
    """A pytest-benchmark JSON file, or a storage folder (newest run by filename; all with ``all_runs``).

    Each document gets ``doc[SOURCE_KEY]`` = its file. Raises BaselineError (one line).
    """
    p = Path(path)
    if not p.exists():
        raise BaselineError(f"{p}: no such file or folder; give a pytest-benchmark JSON file or storage folder "
                            f"(e.g. baselines/h200)")
    if p.is_dir():
        files = _run_files(p)
        if not files:
            raise BaselineError(f"{p}: folder holds no *.json runs; save one with --benchmark-save "
                                f"--benchmark-storage={p}")
        return [_load_one(f) for f in (files if all_runs else files[-1:])]
    return [_load_one(p)]


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


# -- GPU identity -----------------------------------------------------------------------

def gpu_name(doc: Mapping[str, Any]) -> str | None:
    gpu = (doc.get("machine_info") or {}).get("gpu")
    if isinstance(gpu, Mapping):
        name = gpu.get("name")
        return str(name) if name else None
    return str(gpu) if isinstance(gpu, str) and gpu else None


def gpu_uuid(doc: Mapping[str, Any] | None) -> str | None:
    gpu = ((doc or {}).get("machine_info") or {}).get("gpu")
    return str(gpu["uuid"]) if isinstance(gpu, Mapping) and gpu.get("uuid") else None


def is_cross_machine(base_docs: Iterable[Mapping[str, Any]], head_doc: Mapping[str, Any] | None) -> bool:
    """True when both sides name their GPU's UUID and the run's GPU is none of the baseline's."""
    head = gpu_uuid(head_doc)
    base = {u for u in (gpu_uuid(d) for d in base_docs) if u}
    return bool(head and base and head not in base)


def bench_cross_machine(base_bench: Mapping[str, Any] | None, head_bench: Mapping[str, Any],
                        doc_level: bool) -> bool:
    """Per benchmark when both carry the GPU they ran on (extra_info.gpu_uuid: a baseline may
    merge cases from several machines), else the documents' answer."""
    b = ((base_bench or {}).get("extra_info") or {}).get("gpu_uuid")
    h = (head_bench.get("extra_info") or {}).get("gpu_uuid")
    return b != h if b and h else doc_level


def gpu_slug(name: str) -> str:
    """``"NVIDIA H200"`` -> ``"h200"``: the baselines/<gpu>/ folder name."""
    words = [w for w in name.lower().replace("-", " ").split() if w not in ("nvidia", "tesla", "geforce")]
    return words[0] if words else name.lower()


CPU = "the CPU"


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


def device_mismatch(base_docs: Iterable[Mapping[str, Any]], head_doc: Mapping[str, Any]) -> str | None:
    """Why the baseline and the run were measured on different devices (GPU kinds, or a GPU
    against the CPU), or None. A side that names no device is not judged."""
    head_gpu = device_name(head_doc)
    if not head_gpu:
        return None
    for doc in base_docs:
        base_gpu = device_name(doc)
        if base_gpu and base_gpu != head_gpu:
            src = doc.get(SOURCE_KEY)
            return (f"baseline is from {base_gpu}{f' ({src})' if src else ''}, this run is on {head_gpu}; "
                    f"compare against baselines/{gpu_slug(head_gpu.replace(CPU, 'cpu'))} or pass "
                    f"--moeperf-gate-ignore-gpu (python -m pytest_moeperf compare: --ignore-gpu)")
    return None


def check_gpu(base_docs: Iterable[Mapping[str, Any]], head_doc: Mapping[str, Any], config: GateConfig) -> None:
    """Raise GpuMismatchError when baseline and run name different devices (unless ignore_gpu)."""
    if config.ignore_gpu:
        return
    why = device_mismatch(base_docs, head_doc)
    if why:
        raise GpuMismatchError(why)


def bench_key(bench: Mapping[str, Any]) -> str:
    return str(bench.get("fullname") or bench.get("name"))


def index_baseline(base_docs: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Mapping[str, Any], str | None]]:
    """fullname (and name, as a fallback key) -> (benchmark, source file); later documents win."""
    by_full: dict[str, tuple[Mapping[str, Any], str | None]] = {}
    by_name: dict[str, tuple[Mapping[str, Any], str | None]] = {}
    for doc in base_docs:
        for bench in doc.get("benchmarks", []):
            entry = (bench, doc.get(SOURCE_KEY))
            by_full[bench_key(bench)] = entry
            if bench.get("name"):
                by_name[str(bench["name"])] = entry
    return {**{f"name:{k}": v for k, v in by_name.items()}, **by_full}


def baseline_history(base_docs: Sequence[Mapping[str, Any]], head_bench: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every stored run's benchmark matching ``head_bench`` (by fullname, else name), oldest first."""
    key, name = bench_key(head_bench), head_bench.get("name")
    found = []
    for doc in base_docs:
        for bench in doc.get("benchmarks", []):
            if bench_key(bench) == key or (name and bench.get("name") == name):
                found.append(bench)
                break
    return found


def find_baseline(index: Mapping[str, tuple[Mapping[str, Any], str | None]], head_bench: Mapping[str, Any]
                  ) -> tuple[Mapping[str, Any] | None, str | None]:
    entry = index.get(bench_key(head_bench))
    if entry is None and head_bench.get("name"):
        entry = index.get(f"name:{head_bench['name']}")
    return entry if entry is not None else (None, None)

def pool_runs(benches: Sequence[Mapping[str, Any]]) -> dict:
    """Several runs of one benchmark as one: the newest run's entry with every metric's
    per-round samples concatenated over the runs (oldest first), and each measured scalar
    (a timing or energy figure without samples, e.g. ``ape_tpot``) the median over the runs.

    Memory stays the newest run's: it is deterministic, and the newest is the code compared.
    A measured scalar from the newest run alone would be one run's drift: on the H200, 8 runs
    a side with a +8.7% TPOT change pooled gave ``ape_tpot`` -12.1% from the two newest runs.
    """
    newest = benches[-1]
    extra = dict(newest.get("extra_info") or {})
    pooled: dict[str, list] = {}
    for b in benches:
        for key, values in ((b.get("extra_info") or {}).get("samples") or {}).items():
            if isinstance(values, list):
                pooled.setdefault(key, []).extend(values)
    extra["samples"] = pooled
    for metric in schema.METRICS:
        if metric.kind == "memory" or (metric.samples and metric.samples in pooled):
            continue  # memory: the newest run's; sampled metrics are compared over the pooled rounds
        values = [(b.get("extra_info") or {}).get(metric.key) for b in benches]
        values = _finite_list([v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)])
        if values:
            extra[metric.key] = float(np.median(values))
    return {**newest, "extra_info": extra}
