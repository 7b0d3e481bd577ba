"""The regression gate: compare a run's benchmarks against a baseline, metric by metric.

Pure functions only (no printing, no pytest): the CLI (gate_cli), the pytest plugin
(gate_pytest) and the renderers (gate_render) sit on top. docs/gate.md explains the
decision rule; the short version for a metric with per-round samples on both sides:

    FAIL  iff  (a) one-sided Mann-Whitney U p < alpha (head worse than base), and also
               with head moved back by half the threshold (worse by more than thr/2),
          and  (b) the median change in the bad direction > threshold,
          and  (b') the Hodges-Lehmann shift in the bad direction > threshold,
          and  (c) the minimum detectable effect (MDE) <= threshold.
    A bad-direction change beyond the threshold that fails (a) or (c) is INCONCLUSIVE.

The MDE uses the *classical* sample standard deviation (ddof=1) of each side, not a
robust one (MAD, IQR): eager decode round times on the H200 can be bimodal, and with a
minority mode under 25% of the rounds both MAD and IQR see only the majority mode and
report a tiny spread. Two samples of the same bimodal distribution can then have medians
a whole mode apart and a tiny p-value; only a spread estimate that sees both modes
(the SD) turns that into INCONCLUSIVE instead of FAIL. An isolated outlier inflates the
SD too, which costs an INCONCLUSIVE ("more rounds"), never a false FAIL.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pytest_moeperf.metrics import schema
from pytest_moeperf.metrics.schema import Metric

# -- verdicts ---------------------------------------------------------------------------

PASS = "PASS"
WARN = "WARN"
INCONCLUSIVE = "INCONCLUSIVE"
FAIL = "FAIL"
SKIPPED = "SKIPPED"
# The whole gate's outcome when no benchmark was compared (no name in common, nothing measured
# on both sides, another device): not a PASS, and not bad input either.
NO_OVERLAP = "NO-OVERLAP"
EXIT_NO_OVERLAP = 3

# Worst first; a benchmark's verdict is the worst of its metrics'.
_SEVERITY = {SKIPPED: 0, PASS: 1, WARN: 2, INCONCLUSIVE: 3, FAIL: 4}

METHOD_MWU = "mann-whitney"        # per-round samples on both sides
METHOD_TOLERANCE = "tolerance"     # deterministic memory metrics
METHOD_THRESHOLD = "threshold-only"  # summary-only baseline (e.g. the paper's figures)
METHOD_SUMMARY = "summary"         # tails/derived ratios without samples: reported, WARN at most
METHOD_NONE = "none"               # skipped

MIB = 1024 * 1024

# The default thresholds (and why) live with each metric in schema.py (THRESHOLD_BY_KIND_PCT,
# Metric.threshold_pct); [tool.moeperf.gate] thresholds and --moeperf-threshold override them.

# Run-to-run drift assumed when the baseline comes from another physical GPU (its UUID differs)
# and holds a single run, so no drift can be estimated from it. Measured on H200 leases: the
# same eager case's median TPOT moved 12.7% between two machines, two static runs on one
# machine 5.8%; NVML's power sensor has a board-to-board gain error of about 5% (SC24).
# Within-run statistics cannot see any of this: without the prior, a slower machine would FAIL.
DEFAULT_CROSS_MACHINE_DRIFT_PCT: Mapping[str, float] = {
    "latency": 6.0, "throughput": 6.0, "energy": 5.0, "efficiency": 6.0, "memory": 0.0,
}

# Run-to-run drift assumed when the baseline holds a single run from the same GPU (or the GPU
# is not known), so no drift can be estimated from it. Measured on the H200, static backend,
# gpt-oss-20b ctx 2048, three separate processes on one GPU in each of two leases: the
# median TPOT varied by CV 3.0% and 3.6% (per-round energy: 0.7% both times), while a U test
# over the rounds of two such runs put the 7.3% gap between them at p = 2e-5. Without this
# prior one run against one run FAILs same code a few percent of the time.
DEFAULT_SINGLE_RUN_DRIFT_PCT: Mapping[str, float] = {
    "latency": 3.5, "throughput": 3.5, "energy": 1.0, "efficiency": 3.5, "memory": 0.0,
}

# The same for the eager backend, whose decode is host-bound: on one H200 lease three
# separate runs of gpt-oss-20b 2048/64 gave e2e_ms_p50 2575, 2637 and 3008 ms (CV 8.5%) and
# energy per round +11% between two of them; another H200 gave rounds bimodal between 2.6 and
# 3.7 s. Simulated with the measured 8.5% drift (rounds CV 5-9%), one eager run against one
# FAILed the same code 4-5% of the time at the static prior, 0.7% at 8.5%, and none at 12%.
DEFAULT_EAGER_RUN_DRIFT_PCT: Mapping[str, float] = {
    "latency": 12.0, "throughput": 12.0, "energy": 12.0, "efficiency": 12.0, "memory": 0.0,
}
EAGER_BACKEND = "eager"

# Weight of that prior, in degrees of freedom, against the drift measured from k + m runs
# (k + m - 2 degrees of freedom): two or three runs that happen to agree must not make the
# gate trust a drift of 0.5%; ten runs of a quiet machine outweigh the prior.
SINGLE_RUN_DRIFT_PRIOR_DOF = 4

# Host RSS: schema.Metric.gated says why it is reported but never FAILs.
UNGATED_MEMORY_METRICS = frozenset(m.key for m in schema.METRICS if not m.gated)


def default_thresholds_pct() -> dict[str, float]:
    return {m.key: m.threshold_pct for m in schema.METRICS}


class BaselineError(ValueError):
    """A baseline or run file that cannot be used; the message is one line and names the fix."""


class GpuMismatchError(ValueError):
    """Baseline and run were measured on different GPUs."""


# -- configuration ----------------------------------------------------------------------

@dataclass(frozen=True)
class GateConfig:
    thresholds_pct: Mapping[str, float] = field(default_factory=default_thresholds_pct)
    alpha: float = 0.05
    power: float = 0.8  # for the MDE: the effect found with this probability at alpha
    # FAIL also needs the U test to hold with head moved back by this fraction of the threshold:
    # evidence that the regression exceeds half the threshold, not merely that it is non-zero.
    # Cuts false FAILs of same-code runs 2-6x where the spread is near the threshold, and
    # keeps the power for a 10% slowdown at CV 3%, 10 rounds (see docs/gate.md).
    margin_fraction: float = 0.5
    memory_tolerance_pct: float = schema.THRESHOLD_BY_KIND_PCT["memory"]
    memory_tolerance_bytes: int = schema.MEMORY_TOLERANCE_BYTES
    # an improvement beyond this suggests refreshing the baseline; None: the metric's threshold
    improvement_warn_pct: float | None = None
    strict: bool = False
    allow: tuple[str, ...] = ()  # "metric" or "metric@benchmark-name-glob"
    ignore_gpu: bool = False
    cross_machine_drift_pct: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_CROSS_MACHINE_DRIFT_PCT))
    single_run_drift_pct: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SINGLE_RUN_DRIFT_PCT))
    eager_run_drift_pct: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_EAGER_RUN_DRIFT_PCT))

    def threshold_pct(self, metric: str) -> float:
        return float(self.thresholds_pct[metric])

    def improvement_pct(self, metric: str) -> float:
        return self.threshold_pct(metric) if self.improvement_warn_pct is None else self.improvement_warn_pct

    def memory_allowed_bytes(self, metric: str, base_bytes: float) -> float:
        """Allowed growth: the per-metric percent (default 2%) or the byte floor, whichever larger."""
        pct = self.thresholds_pct.get(metric, self.memory_tolerance_pct)
        return max(abs(base_bytes) * pct / 100.0, float(self.memory_tolerance_bytes))

    def is_allowed(self, metric: str, bench_name: str, fullname: str = "") -> bool:
        for spec in self.allow:
            key, _, glob = spec.partition("@")
            if key != metric:
                continue
            if not glob or any(fnmatch.fnmatchcase(n, glob) for n in (bench_name, fullname) if n):
                return True
        return False


_CONFIG_KEYS = ("thresholds", "alpha", "power", "margin_fraction", "memory_tolerance_pct", "memory_tolerance_bytes",
                "improvement_warn_pct", "allow", "strict", "ignore_gpu", "run_drift_pct",
                "eager_run_drift_pct")
_KINDS = tuple(schema.THRESHOLD_BY_KIND_PCT)


def _positive_pct(value: Any, where: str) -> float:
    if isinstance(value, str):
        value = value.strip().rstrip("%")
    try:
        pct = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a number; give a percent such as 5 or 7.5") from None
    if isinstance(value, bool) or not math.isfinite(pct) or pct <= 0:
        raise ValueError(f"{where}: {value!r} must be a positive percent such as 5 or 7.5")
    return pct


def _apply_threshold(thresholds: dict[str, float], key: str, pct: float, where: str) -> None:
    """A key is a metric or a metric kind (latency, throughput, memory, energy, efficiency)."""
    if key in schema.METRICS_BY_KEY:
        thresholds[key] = pct
    elif key in _KINDS:
        for m in schema.METRICS:
            if m.kind == key:
                thresholds[m.key] = pct
    else:
        raise ValueError(f"{where}: unknown metric {key!r}; use one of {', '.join(schema.METRICS_BY_KEY)} "
                         f"or a kind ({', '.join(_KINDS)})")


def parse_threshold_override(text: str) -> tuple[str, float]:
    """``"tpot_ms=7.5"`` -> ("tpot_ms", 7.5)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"threshold {text!r}: write METRIC=PCT, e.g. tpot_ms=7.5")
    return key.strip(), _positive_pct(value, f"threshold {text!r}")


def validate_allow_spec(spec: str) -> str:
    metric, _, glob = spec.partition("@")
    if metric not in schema.METRICS_BY_KEY:
        raise ValueError(f"allow {spec!r}: unknown metric {metric!r}; write METRIC or METRIC@BENCHMARK-GLOB "
                         f"with METRIC one of {', '.join(schema.METRICS_BY_KEY)}")
    if "@" in spec and not glob:
        raise ValueError(f"allow {spec!r}: empty benchmark glob after '@'; write METRIC@BENCHMARK-GLOB")
    return spec


def _read_pyproject_gate(path: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file; pass an existing pyproject.toml or leave the option out") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc}); fix the file") from None
    section = data.get("tool", {}).get("moeperf", {}).get("gate", {})
    if not isinstance(section, dict):
        raise ValueError(f"{path}: [tool.moeperf.gate] must be a table")
    return section


def find_pyproject(start: str | os.PathLike[str] = ".") -> str | None:
    """The nearest pyproject.toml at or above ``start``, or None."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return str(candidate)
    return None


def load_gate_config(pyproject_path: str | None, overrides: Sequence[str] = (), allow: Sequence[str] = (),
                     strict: bool = False, ignore_gpu: bool = False) -> GateConfig:
    """Defaults, then ``[tool.moeperf.gate]`` of ``pyproject_path`` (None: none), then CLI values.

    Raises ValueError with a one-line message naming the fix for any bad value.
    """
    section = _read_pyproject_gate(pyproject_path) if pyproject_path else {}
    where = f"{pyproject_path} [tool.moeperf.gate]"
    unknown = sorted(set(section) - set(_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(_CONFIG_KEYS)}")

    thresholds = default_thresholds_pct()
    table = section.get("thresholds", {})
    if not isinstance(table, dict):
        raise ValueError(f"{where}: thresholds must be a table, e.g. thresholds = {{tpot_ms = 5.0}}")
    # kinds first, so that a metric entry wins over its kind's entry
    for key in sorted(table, key=lambda k: k not in _KINDS):
        _apply_threshold(thresholds, key, _positive_pct(table[key], f"{where} thresholds.{key}"), where)

    values: dict[str, Any] = {}
    if "alpha" in section:
        values["alpha"] = _fraction(section["alpha"], f"{where} alpha", upper=0.5)
    if "power" in section:
        values["power"] = _fraction(section["power"], f"{where} power", upper=1.0, lower=0.5)
    if "margin_fraction" in section:
        m = section["margin_fraction"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m <= 1:
            raise ValueError(f"{where} margin_fraction: {m!r} must be a number from 0 to 1, e.g. 0.5")
        values["margin_fraction"] = float(m)
    if "memory_tolerance_pct" in section:
        pct = _positive_pct(section["memory_tolerance_pct"], f"{where} memory_tolerance_pct")
        values["memory_tolerance_pct"] = pct
        for m in schema.METRICS:  # the memory metrics' percent, unless set per metric
            if m.kind == "memory" and m.key not in table and "memory" not in table:
                thresholds[m.key] = pct
    if "memory_tolerance_bytes" in section:
        b = section["memory_tolerance_bytes"]
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise ValueError(f"{where} memory_tolerance_bytes: {b!r} must be a non-negative integer "
                             f"(bytes, e.g. 268435456 for 256 MiB)")
        values["memory_tolerance_bytes"] = b
    if "improvement_warn_pct" in section:
        values["improvement_warn_pct"] = _positive_pct(section["improvement_warn_pct"],
                                                       f"{where} improvement_warn_pct")
    if "run_drift_pct" in section:
        values["single_run_drift_pct"] = _run_drift(section["run_drift_pct"], f"{where} run_drift_pct",
                                                    DEFAULT_SINGLE_RUN_DRIFT_PCT)
    if "eager_run_drift_pct" in section:
        values["eager_run_drift_pct"] = _run_drift(section["eager_run_drift_pct"], f"{where} eager_run_drift_pct",
                                                   DEFAULT_EAGER_RUN_DRIFT_PCT)
    for flag in ("strict", "ignore_gpu"):
        if flag in section:
            if not isinstance(section[flag], bool):
                raise ValueError(f"{where} {flag}: {section[flag]!r} must be true or false")
            values[flag] = section[flag]

    file_allow = section.get("allow", [])
    if not isinstance(file_allow, list) or not all(isinstance(s, str) for s in file_allow):
        raise ValueError(f"{where} allow: must be a list of strings such as [\"energy_j\", \"tpot_ms@*gpt-oss*\"]")

    for text in overrides:
        key, pct = parse_threshold_override(text)
        _apply_threshold(thresholds, key, pct, f"threshold {text!r}")

    allow_specs = tuple(validate_allow_spec(s) for s in (*file_allow, *allow))
    return GateConfig(thresholds_pct=thresholds, allow=allow_specs,
                      strict=bool(strict or values.pop("strict", False)),
                      ignore_gpu=bool(ignore_gpu or values.pop("ignore_gpu", False)), **values)


def _run_drift(value: Any, where: str, defaults: Mapping[str, float]) -> dict[str, float]:
    """``run_drift_pct = 2.0`` (latency, throughput, efficiency) or a table by kind."""
    out = dict(defaults)
    if isinstance(value, dict):
        for kind, pct in value.items():
            if kind not in out:
                raise ValueError(f"{where}: unknown kind {kind!r}; kinds: {', '.join(out)}")
            out[kind] = _non_negative_pct(pct, f"{where}.{kind}")
        return out
    pct = _non_negative_pct(value, where)
    for kind in ("latency", "throughput", "efficiency"):
        out[kind] = pct
    return out


def _non_negative_pct(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
        raise ValueError(f"{where}: {value!r} must be a percentage from 0 to under 100, e.g. 3.5")
    return float(value)


def _fraction(value: Any, where: str, upper: float, lower: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lower < value < upper):
        raise ValueError(f"{where}: {value!r} must be a number between {lower} and {upper} (exclusive), e.g. 0.05")
    return float(value)


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


# -- per-metric comparison --------------------------------------------------------------

@dataclass(frozen=True)
class MetricComparison:
    metric: str
    unit: str
    direction: str
    baseline: float | None
    current: float | None
    change_pct: float | None    # (current - baseline) / baseline, signed; not direction-adjusted
    p_value: float | None       # one-sided, in the bad direction
    mde_pct: float | None       # minimum detectable effect at alpha and power
    threshold_pct: float | None
    method: str
    verdict: str
    reason: str
    n_baseline: int | None = None
    n_current: int | None = None
    hl_change_pct: float | None = None  # Hodges-Lehmann shift relative to the baseline median
    suggested_rounds: int | None = None
    # run-to-run drift (CV of the medians of the stored baseline runs, %) and how many runs gave it
    drift_pct: float | None = None
    baseline_runs: int | None = None
    current_runs: int | None = None  # runs pooled on this run's side (compare BASE HEAD1 HEAD2 ...)

    def to_json(self) -> dict:
        return {k: _json_number(v) for k, v in self.__dict__.items()}


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _json_number(v.item())
    return v


def _finite(values: Any) -> np.ndarray:
    if not isinstance(values, (list, tuple)):
        return np.empty(0)
    out = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    arr = np.asarray(out, dtype=float)
    return arr[np.isfinite(arr)]


def _scalar(extra: Mapping[str, Any], key: str) -> float | None:
    v = extra.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return float(v)


def _rel_pct(delta: float, base: float) -> float | None:
    return None if base == 0 else 100.0 * delta / abs(base)


def _bad(metric: Metric, change_pct: float | None) -> float | None:
    """Change in the bad direction, in percent (positive = worse)."""
    if change_pct is None:
        return None
    return change_pct if metric.direction == "lower" else -change_pct


def _z(q: float) -> float:
    """The standard normal quantile of q."""
    from scipy.stats import norm  # scipy.stats takes ~0.6 s to import: only when comparing

    return float(norm.ppf(q))


def _z_sum(alpha: float, power: float) -> float:
    return _z(1 - alpha) + _z(power)


def min_rounds_for_alpha(alpha: float) -> int:
    """Fewest rounds per side for which the exact one-sided U test can reach p < alpha at all."""
    n = 2
    while 1.0 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


def lag1_autocorrelation(x: np.ndarray) -> float:
    """Lag-1 autocorrelation of rounds in the order they ran, clipped to [0, 0.9].

    Rounds are not independent: on the H200 a host-bound decode stays fast or slow for
    several rounds (lag-1 autocorrelation 0.3-0.8 in static and eager TPOT). Negative values
    are clipped to 0 (no credit for anti-correlation); 0.9 caps the inflation at sqrt(19).
    """
    x = np.asarray(x, dtype=float)
    if x.size < 3:
        return 0.0
    d = x - x.mean()
    denom = float(np.dot(d, d))
    if denom == 0:
        return 0.0
    return min(max(float(np.dot(d[1:], d[:-1])) / denom, 0.0), 0.9)


def variance_inflation(x: np.ndarray) -> float:
    """Var(mean) of an AR(1) series over that of independent rounds: (1 + r) / (1 - r)."""
    r = lag1_autocorrelation(x)
    return (1.0 + r) / (1.0 - r)


def mde_pct(base: np.ndarray, head: np.ndarray, alpha: float, power: float) -> float:
    """MDE = (z_{1-a} + z_power) * sqrt(f_b s_b^2/n_b + f_h s_h^2/n_h) / |median_b|.

    s = sample SD (ddof=1); f = variance inflation of correlated rounds (1 for independent
    ones), i.e. n/f is the effective number of rounds.
    """
    med = float(np.median(base))
    if med == 0:
        return math.inf
    se = math.sqrt(variance_inflation(base) * np.var(base, ddof=1) / base.size
                   + variance_inflation(head) * np.var(head, ddof=1) / head.size)
    return 100.0 * _z_sum(alpha, power) * se / abs(med)


def rounds_needed(base: np.ndarray, head: np.ndarray, threshold_pct: float, alpha: float, power: float) -> int:
    """Rounds per side (equal on both) for which the MDE would drop to the threshold."""
    med = abs(float(np.median(base)))
    var = float(variance_inflation(base) * np.var(base, ddof=1) + variance_inflation(head) * np.var(head, ddof=1))
    if med == 0:
        return max(base.size, head.size) * 2
    n = math.ceil(_z_sum(alpha, power) ** 2 * var / (threshold_pct / 100.0 * med) ** 2)
    return max(n, min_rounds_for_alpha(alpha))


def spread_pct(values: np.ndarray) -> float:
    """Coefficient of variation of the rounds, in percent."""
    mean = float(np.mean(values))
    return 100.0 * float(np.std(values, ddof=1)) / abs(mean) if mean and values.size >= 2 else 0.0


def _one_sided_p(head: np.ndarray, base: np.ndarray, head_worse_if: str) -> float:
    """P-value for 'head is stochastically greater/less than base'."""
    if np.ptp(np.concatenate([head, base])) == 0:
        return 1.0  # all values equal: nothing to test (scipy would divide by a zero variance)
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(head, base, alternative=head_worse_if).pvalue)


def _remove_margin(metric: Metric, head: np.ndarray, margin_pct: float) -> np.ndarray:
    """Head values moved ``margin_pct`` back toward good, so a U test of the result against the
    baseline asks "is head worse by *more than* the margin?" rather than "worse at all?"."""
    m = margin_pct / 100.0
    return head / (1 + m) if metric.direction == "lower" else head / max(1 - m, 1e-9)


def _finite_list(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def drift_pct(run_medians: Sequence[float], head_run_medians: Sequence[float] = ()) -> float | None:
    """Run-to-run drift: coefficient of variation (%) of the medians of separate runs.

    Rounds within one run share the machine's state (host load, clocks, compiled kernels);
    separate runs of the same code do not: on the H200 two static-backend runs differed by
    7.3% with a within-run spread of ~5%. A U test over rounds cannot see that component, so
    it is estimated from the runs' medians: the stored baseline runs and, when this run's side
    has several runs too, theirs (each side about its own mean, degrees of freedom pooled).
    """
    sides = [v for v in (_finite_list(run_medians), _finite_list(head_run_medians)) if v]
    dof = sum(len(v) - 1 for v in sides)
    if dof < 1:
        return None
    squares = sum(float(np.sum((np.asarray(v) - np.mean(v)) ** 2)) for v in sides)
    mean = float(np.mean([x for v in sides for x in v]))
    return 100.0 * math.sqrt(squares / dof) / abs(mean) if mean else None


def total_mde_pct(within_mde_pct: float, drift: float | None, runs: int, alpha: float, power: float,
                  head_runs: int = 1) -> float:
    """MDE with the run-to-run component: the mean of m runs' medians differs from that of k
    stored baseline runs by within-run noise plus drift * sqrt(1/m + 1/k)."""
    if drift is None:
        return within_mde_pct
    between = _z_sum(alpha, power) * drift * math.sqrt(1.0 / max(head_runs, 1) + 1.0 / max(runs, 1))
    return math.hypot(within_mde_pct, between)


def compare_samples(metric: Metric, base: np.ndarray, head: np.ndarray, config: GateConfig,
                    run_medians: Sequence[float] = (), prior_drift_pct: float | None = None,
                    single_run_drift_pct: float | None = None,
                    head_run_medians: Sequence[float] = ()) -> MetricComparison:
    thr = config.threshold_pct(metric.key)
    med_b, med_h = float(np.median(base)), float(np.median(head))
    change = _rel_pct(med_h - med_b, med_b)
    hl = _rel_pct(float(np.median(np.subtract.outer(head, base))), med_b)
    worse = "greater" if metric.direction == "lower" else "less"
    better = "less" if worse == "greater" else "greater"
    p_bad = _one_sided_p(head, base, worse)
    p_good = _one_sided_p(head, base, better)
    p_margin = _one_sided_p(_remove_margin(metric, head, config.margin_fraction * thr), base, worse)
    drift = drift_pct(run_medians, head_run_medians)
    machines = False  # the drift is an assumed offset between machines
    runs = max(len(_finite_list(run_medians)), 1)
    head_runs = max(len(_finite_list(head_run_medians)), 1)
    drift_note = (f", run-to-run drift {drift:.1f}% over {runs} baseline + {head_runs} current runs"
                  if drift is not None else "")
    if prior_drift_pct:
        # another machine: stored runs that agree with each other (all from the baseline's
        # machine) say nothing about the drift between machines. Assume the measured one, or
        # the rounds' own spread where that is wider: a host-bound eager decode whose rounds
        # scatter by CV 10-20% moved its median by up to 36% between two H200 machines.
        assumed = max(prior_drift_pct, math.hypot(spread_pct(base), spread_pct(head)) / math.sqrt(2))
        if drift is None or drift < assumed:
            # a machine's offset does not average out over more runs on either machine
            drift, runs, head_runs, machines = assumed, 1, 1, True
            drift_note = f", incl. an assumed {drift:.1f}% drift between machines (baseline from another GPU)"
    elif single_run_drift_pct:
        # the drift measured between processes on one H200, as a prior: alone with one run a
        # side, pooled with the measured drift (weighted by degrees of freedom) with more
        dof = runs + head_runs - 2
        if drift is None:
            drift = single_run_drift_pct
            drift_note = (f", incl. an assumed {drift:g}% drift between runs (one run a side: pass several "
                          f"runs, e.g. compare BASE_DIR RUN1 RUN2 RUN3)")
        else:
            k0 = SINGLE_RUN_DRIFT_PRIOR_DOF
            drift = math.sqrt((k0 * single_run_drift_pct ** 2 + dof * drift ** 2) / (k0 + dof))
            drift_note = (f", run-to-run drift {drift:.1f}% ({runs} baseline + {head_runs} current runs, "
                          f"pooled with the assumed {single_run_drift_pct:g}%)")
    mde = total_mde_pct(mde_pct(base, head, config.alpha, config.power), drift, runs, config.alpha, config.power,
                        head_runs)
    common = dict(metric=metric.key, unit=metric.unit, direction=metric.direction, baseline=med_b,
                  current=med_h, change_pct=change, p_value=p_bad, mde_pct=mde, threshold_pct=thr,
                  method=METHOD_MWU, n_baseline=int(base.size), n_current=int(head.size), hl_change_pct=hl,
                  drift_pct=drift, baseline_runs=runs, current_runs=head_runs)
    if change is None:
        return MetricComparison(**common, verdict=WARN, reason="baseline median is 0: change not expressible in %")

    bad, bad_hl = _bad(metric, change), _bad(metric, hl)
    significant = p_bad < config.alpha
    beyond = bad > thr and bad_hl is not None and bad_hl > thr
    if beyond:
        # FAIL needs a detectable effect within the threshold, or a change clearly beyond both:
        # past threshold + MDE, which same-code noise reaches well under 1% of the time
        # (MDE is the 80%-power effect at alpha), while a large real regression on a noisy
        # host-bound decode is not left INCONCLUSIVE forever.
        clear = bad > thr + mde and bad_hl > thr + mde
        # the U test over rounds cannot see run-to-run drift; so the change must also clear
        # the margin by z_(1-alpha) standard errors of the difference of run levels
        # (within-run and drift parts together: se = MDE / (z_(1-alpha) + z_power))
        beyond_drift = (bad - config.margin_fraction * thr
                        > _z(1 - config.alpha) * mde / _z_sum(config.alpha, config.power))
        if significant and p_margin < config.alpha and beyond_drift and (mde <= thr or clear):
            how = "" if mde <= thr else f", beyond threshold + detectable effect {thr + mde:.1f}%"
            return MetricComparison(**common, verdict=FAIL,
                                    reason=f"worse by {bad:.1f}% > {thr:g}% (p={p_bad:.2g}, HL {bad_hl:.1f}%{how})")
        # the drift part of the MDE does not shrink with rounds: size the rounds for what is left
        between = (total_mde_pct(0.0, drift, runs, config.alpha, config.power, head_runs)
                   if drift is not None else 0.0)
        if between >= thr:
            if machines:
                fix = "measure the baseline on this GPU"
            else:
                # runs a side for which the drift part falls to 80% of the threshold
                n = math.ceil(2.0 * (_z_sum(config.alpha, config.power) * drift / (0.8 * thr)) ** 2)
                fix = f"compare {n} or more runs a side (compare BASE_DIR RUN1 ... RUN{n})"
            why = (f"detectable effect {mde:.1f}% > threshold {thr:g}%{drift_note}: run-to-run drift alone "
                   f"({between:.1f}%) exceeds the threshold, so more rounds cannot settle it; {fix}")
            return MetricComparison(**common, verdict=INCONCLUSIVE, reason=why)
        need = rounds_needed(base, head, math.sqrt(thr ** 2 - between ** 2), config.alpha, config.power)
        if mde > thr:
            why = f"detectable effect {mde:.1f}% > threshold {thr:g}% (spread too wide{drift_note})"
        elif significant:
            margin_pct = config.margin_fraction * thr
            why = (f"worse by {bad:.1f}% but not significantly more than {margin_pct:g}% "
                   f"(p={p_margin:.2g} >= {config.alpha:g})")
            need = max(need, 2 * max(base.size, head.size))
        else:
            why = f"worse by {bad:.1f}% but not significant (p={p_bad:.2g} >= {config.alpha:g})"
            need = max(need, 2 * max(base.size, head.size))
        return MetricComparison(**common, verdict=INCONCLUSIVE, suggested_rounds=need,
                                reason=f"{why}; more rounds suggested: {need}")
    if significant and bad > 0:
        return MetricComparison(**common, verdict=WARN,
                                reason=f"significantly worse by {bad:.1f}% (p={p_bad:.2g}), under {thr:g}%")
    imp = config.improvement_pct(metric.key)
    if p_good < config.alpha and -bad > imp and bad_hl is not None and -bad_hl > imp:
        return MetricComparison(**common, verdict=WARN,
                                reason=f"improved by {-bad:.1f}% > {imp:g}%: refresh the baseline")
    note = f"; detectable effect {mde:.1f}% > {thr:g}%" if mde > thr else ""
    return MetricComparison(**common, verdict=PASS, reason=f"within {thr:g}%{note}")


def compare_memory(metric: Metric, base: float, head: float, config: GateConfig) -> MetricComparison:
    allowed = config.memory_allowed_bytes(metric.key, base)
    delta = head - base
    bad_bytes = delta if metric.direction == "lower" else -delta
    eff_pct = _rel_pct(allowed, base)
    common = dict(metric=metric.key, unit=metric.unit, direction=metric.direction, baseline=base, current=head,
                  change_pct=_rel_pct(delta, base), p_value=None, mde_pct=None, threshold_pct=eff_pct,
                  method=METHOD_TOLERANCE)
    tol = f"{allowed / MIB:.0f} MiB"
    if bad_bytes > allowed and metric.key in UNGATED_MEMORY_METRICS:
        return MetricComparison(**common, verdict=WARN,
                                reason=f"grew by {bad_bytes / MIB:.0f} MiB > {tol} (host memory: reported, not gated)")
    if bad_bytes > allowed:
        return MetricComparison(**common, verdict=FAIL, reason=f"grew by {bad_bytes / MIB:.0f} MiB > tolerance {tol}")
    if -bad_bytes > allowed:
        return MetricComparison(**common, verdict=WARN,
                                reason=f"shrank by {-bad_bytes / MIB:.0f} MiB > tolerance {tol}: refresh the baseline")
    return MetricComparison(**common, verdict=PASS, reason=f"within {tol}")


def compare_scalars(metric: Metric, base: float, head: float, config: GateConfig, method: str) -> MetricComparison:
    """No samples: compare the summary values against the threshold alone.

    METHOD_THRESHOLD (summary-only baseline) may FAIL; METHOD_SUMMARY (a tail or derived
    ratio in a fully measured run, whose sampled source is gated already) WARNs at most.
    """
    thr = config.threshold_pct(metric.key)
    change = _rel_pct(head - base, base)
    common = dict(metric=metric.key, unit=metric.unit, direction=metric.direction, baseline=base, current=head,
                  change_pct=change, p_value=None, mde_pct=None, threshold_pct=thr, method=method)
    if change is None:
        verdict = PASS if head == base else WARN
        return MetricComparison(**common, verdict=verdict, reason="baseline is 0: change not expressible in %")
    bad = _bad(metric, change)
    if bad > thr:
        if method == METHOD_SUMMARY:
            return MetricComparison(**common, verdict=WARN,
                                    reason=f"worse by {bad:.1f}% > {thr:g}% (no samples: not gated)")
        return MetricComparison(**common, verdict=FAIL, reason=f"worse by {bad:.1f}% > {thr:g}% (no samples)")
    imp = config.improvement_pct(metric.key)
    if -bad > imp:
        return MetricComparison(**common, verdict=WARN, reason=f"improved by {-bad:.1f}% > {imp:g}%: refresh the baseline")
    return MetricComparison(**common, verdict=PASS, reason=f"within {thr:g}%")


def _skipped(metric: Metric, base: float | None, head: float | None) -> MetricComparison:
    side = "baseline" if base is None else "this run"
    return MetricComparison(metric=metric.key, unit=metric.unit, direction=metric.direction, baseline=base,
                            current=head, change_pct=None, p_value=None, mde_pct=None, threshold_pct=None,
                            method=METHOD_NONE, verdict=SKIPPED, reason=f"not measured in {side}")


def _samples(extra: Mapping[str, Any], metric: Metric) -> np.ndarray:
    samples = extra.get("samples")
    if not metric.samples or not isinstance(samples, Mapping):
        return np.empty(0)
    return _finite(samples.get(metric.samples))


def is_summary_only(extra: Mapping[str, Any]) -> bool:
    samples = extra.get("samples")
    return extra.get("source") == "paper" or not isinstance(samples, Mapping) or not samples


def run_median(extra: Mapping[str, Any], metric: Metric) -> float | None:
    """One stored run's median of a metric's samples (None without samples)."""
    vals = _samples(extra, metric)
    return float(np.median(vals)) if vals.size else None


def compare_metric(metric: Metric, base_extra: Mapping[str, Any], head_extra: Mapping[str, Any],
                   config: GateConfig, history: Sequence[Mapping[str, Any]] = (),
                   cross_machine: bool = False,
                   head_history: Sequence[Mapping[str, Any]] = ()) -> MetricComparison | None:
    """None when the metric is measured on neither side. ``history``: extra_info of every stored
    baseline run of this benchmark (the newest included), for the run-to-run drift."""
    base_b, head_b = _samples(base_extra, metric), _samples(head_extra, metric)
    base_v, head_v = _scalar(base_extra, metric.key), _scalar(head_extra, metric.key)
    if base_b.size >= 2 and head_b.size >= 2:
        medians = [m for m in (run_median(h, metric) for h in history) if m is not None]
        prior = config.cross_machine_drift_pct.get(metric.kind) if cross_machine else None
        head_medians = [m for m in (run_median(h, metric) for h in head_history) if m is not None]
        # a serving load point (continuous batching, host-scheduled) gets the host-bound eager prior
        # until its run-to-run drift is measured on a GPU
        eager = (EAGER_BACKEND in (head_extra.get("backend"), base_extra.get("backend"))
                 or "load_point" in head_extra)
        run_drift = (config.eager_run_drift_pct if eager else config.single_run_drift_pct).get(metric.kind)
        return compare_samples(metric, base_b, head_b, config, medians, prior, run_drift, head_medians)
    if base_v is None and head_v is None:
        return None
    if base_v is None or head_v is None:
        return _skipped(metric, base_v, head_v)
    if metric.kind == "memory":
        return compare_memory(metric, base_v, head_v, config)
    summary_only = is_summary_only(base_extra) or is_summary_only(head_extra)
    return compare_scalars(metric, base_v, head_v, config, METHOD_THRESHOLD if summary_only else METHOD_SUMMARY)


# -- per-benchmark ----------------------------------------------------------------------

@dataclass(frozen=True)
class BenchmarkResult:
    fullname: str
    name: str
    status: str  # "compared" | "new" | "not-compared" (matched, but no metric measured on both sides)
    verdict: str
    metrics: tuple[MetricComparison, ...] = ()
    throttled_rounds: int = 0
    baseline_source: str | None = None
    note: str | None = None  # why a matched benchmark was not compared

    @property
    def failures(self) -> tuple[MetricComparison, ...]:
        return tuple(m for m in self.metrics if m.verdict == FAIL)

    def to_json(self) -> dict:
        return {"fullname": self.fullname, "name": self.name, "status": self.status, "verdict": self.verdict,
                "throttled_rounds": self.throttled_rounds, "baseline_source": self.baseline_source,
                "note": self.note, "metrics": [m.to_json() for m in self.metrics]}


def worst(verdicts: Iterable[str]) -> str:
    return max(verdicts, key=_SEVERITY.__getitem__, default=PASS)


def bench_key(bench: Mapping[str, Any]) -> str:
    return str(bench.get("fullname") or bench.get("name"))


def _throttled(extra: Mapping[str, Any]) -> int:
    v = extra.get("throttled_rounds")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0


def _adjust(cmp: MetricComparison, throttled: int, allowed: bool) -> MetricComparison:
    # Throttling slows clocks, not allocations: a memory FAIL stays a FAIL.
    if cmp.verdict == FAIL and throttled and cmp.method != METHOD_TOLERANCE:
        cmp = replace(cmp, verdict=INCONCLUSIVE, reason=f"clock throttling in {throttled} rounds; {cmp.reason}")
    if allowed and cmp.verdict in (FAIL, INCONCLUSIVE):
        cmp = replace(cmp, verdict=WARN, reason=f"allowlisted; {cmp.reason}")
    return cmp


def compare_benchmark(base_bench: Mapping[str, Any] | None, head_bench: Mapping[str, Any], config: GateConfig,
                      baseline_source: str | None = None,
                      history: Sequence[Mapping[str, Any]] = (), cross_machine: bool = False,
                      head_history: Sequence[Mapping[str, Any]] = ()) -> BenchmarkResult:
    """One head benchmark against its baseline benchmark (None: a new benchmark, PASS)."""
    fullname, name = bench_key(head_bench), str(head_bench.get("name") or bench_key(head_bench))
    head_extra = head_bench.get("extra_info") or {}
    throttled = _throttled(head_extra)
    if base_bench is None:
        return BenchmarkResult(fullname, name, "new", PASS, throttled_rounds=throttled)
    if len(history) > 1:
        # several stored runs: the baseline is all their rounds (the MDE's sqrt(1/m + 1/k)
        # assumes the k runs' mean level, not the newest run's), scalars from the newest
        base_bench = pool_runs(history)
    base_extra = base_bench.get("extra_info") or {}
    runs = [b.get("extra_info") or {} for b in history] or [base_extra]
    out = []
    for metric in schema.METRICS:
        cmp = compare_metric(metric, base_extra, head_extra, config, runs, cross_machine, head_history)
        if cmp is not None:
            out.append(_adjust(cmp, throttled, config.is_allowed(metric.key, name, fullname)))
    if not any(m.verdict != SKIPPED for m in out):
        # e.g. a case cut short before its metrics were filled in, or another suite's benchmark
        return BenchmarkResult(fullname, name, "not-compared", SKIPPED, tuple(out), throttled, baseline_source,
                               note="no metric measured on both sides")
    return BenchmarkResult(fullname, name, "compared", worst(m.verdict for m in out), tuple(out), throttled,
                           baseline_source)


def not_comparable(head_bench: Mapping[str, Any], why: str, baseline_source: str | None = None) -> BenchmarkResult:
    """A matched benchmark the gate must not compare (measured on another device)."""
    fullname = bench_key(head_bench)
    return BenchmarkResult(fullname, str(head_bench.get("name") or fullname), "not-compared", SKIPPED,
                           baseline_source=baseline_source, note=why)


# -- whole run --------------------------------------------------------------------------

@dataclass(frozen=True)
class GateResult:
    benchmarks: tuple[BenchmarkResult, ...]
    missing: tuple[str, ...]  # in the baseline, not in this run
    config: GateConfig
    baseline_sources: tuple[str, ...] = ()
    head_source: str | None = None
    baseline_gpu: str | None = None
    head_gpu: str | None = None
    has_baseline: bool = True  # False: no baseline yet (pytest, empty storage): everything is new

    @property
    def compared(self) -> int:
        """Benchmarks with at least one metric compared."""
        return sum(1 for b in self.benchmarks if b.status == "compared")

    @property
    def nothing_compared(self) -> bool:
        return self.has_baseline and self.compared == 0

    @property
    def verdict(self) -> str:
        if self.nothing_compared:
            return NO_OVERLAP
        return worst(b.verdict for b in self.benchmarks)

    def counts(self) -> dict[str, int]:
        out = {v: 0 for v in (PASS, WARN, INCONCLUSIVE, FAIL)}
        for b in self.benchmarks:
            out[b.verdict] = out.get(b.verdict, 0) + 1
        return out

    def underpowered(self) -> list[tuple[str, MetricComparison]]:
        """(benchmark name, metric) for each PASS or WARN whose detectable effect exceeds its
        threshold: that comparison could not have caught a regression of the threshold's size
        (on the H200, one run a side passed a real +9% decode slowdown this way when the
        baseline run was itself a slow one). Not a verdict of its own: it is reported beside."""
        return [(b.name, m) for b in self.benchmarks for m in b.metrics
                if m.verdict in (PASS, WARN) and m.mde_pct is not None and m.threshold_pct is not None
                and m.mde_pct > m.threshold_pct]

    def exit_code(self, strict: bool | None = None) -> int:
        strict = self.config.strict if strict is None else strict
        bad = {FAIL, INCONCLUSIVE} if strict else {FAIL}
        if any(b.verdict in bad for b in self.benchmarks):
            return 1
        return EXIT_NO_OVERLAP if self.nothing_compared else 0

    def to_json(self) -> dict:
        c = self.config
        return {
            "moeperf_gate_version": 1,
            "verdict": self.verdict,
            "exit_code": self.exit_code(),
            "counts": self.counts(),
            "compared": self.compared,
            "baseline_sources": list(self.baseline_sources),
            "head_source": self.head_source,
            "baseline_gpu": self.baseline_gpu,
            "head_gpu": self.head_gpu,
            "config": {"alpha": c.alpha, "power": c.power, "margin_fraction": c.margin_fraction,
                       "thresholds_pct": dict(c.thresholds_pct),
                       "memory_tolerance_pct": c.memory_tolerance_pct,
                       "memory_tolerance_bytes": c.memory_tolerance_bytes,
                       "improvement_warn_pct": c.improvement_warn_pct, "strict": c.strict,
                       "allow": list(c.allow), "ignore_gpu": c.ignore_gpu,
                       "run_drift_pct": dict(c.single_run_drift_pct),
                       "eager_run_drift_pct": dict(c.eager_run_drift_pct)},
            "benchmarks": [b.to_json() for b in self.benchmarks],
            "missing": list(self.missing),
            "underpowered": [{"benchmark": name, "metric": m.metric, "mde_pct": m.mde_pct,
                              "threshold_pct": m.threshold_pct} for name, m in self.underpowered()],
        }


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


def build_result(results: Sequence[BenchmarkResult], base_docs: Sequence[Mapping[str, Any]], config: GateConfig,
                 head_doc: Mapping[str, Any] | None = None) -> GateResult:
    """Assemble a GateResult from per-benchmark results (the pytest plugin calls this at session end)."""
    seen_full = {r.fullname for r in results} | {r.name for r in results}
    missing = []
    for doc in base_docs:
        for bench in doc.get("benchmarks", []):
            key = bench_key(bench)
            if key not in seen_full and bench.get("name") not in seen_full and key not in missing:
                missing.append(key)
    base_gpus = [g for g in (gpu_name(d) for d in base_docs) if g]
    return GateResult(has_baseline=bool(base_docs),
        benchmarks=tuple(results), missing=tuple(missing), config=config,
        baseline_sources=tuple(str(d[SOURCE_KEY]) for d in base_docs if d.get(SOURCE_KEY)),
        head_source=(head_doc or {}).get(SOURCE_KEY), baseline_gpu=base_gpus[-1] if base_gpus else None,
        head_gpu=gpu_name(head_doc) if head_doc else None)


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


def compare_documents(base_docs: Sequence[Mapping[str, Any]],
                      head: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                      config: GateConfig) -> GateResult:
    """Every benchmark of the run against the baseline documents, matched by fullname (then name).

    ``head`` is one run's document, or several runs of the same code (oldest first): their
    rounds are pooled and the spread of their medians joins the baseline runs' in the
    run-to-run drift, which shrinks as sqrt(1/m + 1/k) with m runs here and k stored.
    """
    from pytest_moeperf.gate.gate_run import GateRun  # the one path every verdict takes (gate_run imports this module)

    return GateRun(base_docs, config).compare(head)
