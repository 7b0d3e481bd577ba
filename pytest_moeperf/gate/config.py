"""The gate's configuration: thresholds, alpha/power, drift priors; read from [tool.moeperf.gate] and the command line."""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_moeperf.metrics import schema
from pytest_moeperf.results.documents import DocumentError
from pytest_moeperf.results.outputs import DEFAULT_VERDICT_JSON


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


# A baseline or run file that cannot be used (one line naming the fix): the document store's error,
# so that what the gate raises about a file and what reading it raises are caught as one.
BaselineError = DocumentError


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
    values = _file_values(section, where)
    if "memory_tolerance_pct" in values:
        for m in schema.METRICS:  # the memory metrics' percent, unless set per metric
            if m.kind == "memory" and m.key not in table and "memory" not in table:
                thresholds[m.key] = values["memory_tolerance_pct"]

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


def _file_values(section: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The GateConfig fields ``[tool.moeperf.gate]`` sets besides thresholds and allow, checked."""
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
        values["memory_tolerance_pct"] = _positive_pct(section["memory_tolerance_pct"],
                                                       f"{where} memory_tolerance_pct")
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
    return values


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


def add_options(add) -> None:
    """Declare the gate's options with ``add`` (pytest's ``group.addoption``); plugin/gate_pytest.py reads them."""
    add("--moeperf-gate", metavar="PATH|auto|off", default="auto",
        help="baseline to gate against: a JSON file or folder, auto (the --benchmark-compare run or the newest "
             "run in the storage of --gpu) or off")
    add("--moeperf-threshold", metavar="METRIC=PCT", action="append", default=[],
        help="override the gate's practical threshold for a metric (repeatable)")
    add("--moeperf-allow", metavar="METRIC[@BENCH]", action="append", default=[],
        help="acknowledged regression: FAIL becomes WARN for this metric (repeatable)")
    add("--moeperf-gate-strict", action="store_true", default=False, help="INCONCLUSIVE verdicts also fail the run")
    add("--moeperf-gate-ignore-gpu", action="store_true", default=False,
        help="compare even when the baseline was measured on another GPU kind")
    add("--moeperf-verdict-json", metavar="PATH", default=DEFAULT_VERDICT_JSON, help="where to write the gate's verdicts")
    add("--moeperf-baseline-segment", metavar="all|last-stable", default="all",
        help="last-stable: gate against the stored runs since each benchmark's newest change point, pooled "
             "(python -m pytest_moeperf history; needs apache-otava); all: every stored run (default)")


def parse_options(get, rootpath) -> GateConfig:
    """The gate's settings from its pytest options (``get(dest, default)``) and the pyproject.toml at or
    above ``rootpath``; ValueError (one line) for a bad value."""
    return load_gate_config(find_pyproject(rootpath), get("moeperf_threshold", []), get("moeperf_allow", []),
                            bool(get("moeperf_gate_strict", False)), bool(get("moeperf_gate_ignore_gpu", False)))
