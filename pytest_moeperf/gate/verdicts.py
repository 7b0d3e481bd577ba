"""The gate's result types: verdicts, methods and the per-metric, per-benchmark and whole-run results."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pytest_moeperf.gate.config import GateConfig


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
