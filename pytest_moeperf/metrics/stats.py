"""Summary statistics with the method stated, so every percentile is reproducible.

Percentiles use numpy's default 'linear' method (Hyndman & Fan type 7). With n = 10
rounds, p95 lies 0.55 of the way from the 9th to the 10th order statistic: close to the
max, which is why the suite always reports n next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

PERCENTILE_METHOD = "linear"


def percentile(values: Sequence[float], q: float) -> float | None:
    import numpy as np

    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q, method=PERCENTILE_METHOD))


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (sample stddev / mean); None under two values."""
    import numpy as np

    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    return float(arr.std(ddof=1) / mean) if mean else None


def ci95_mean(values: Sequence[float]) -> tuple[float, float] | None:
    """Student-t 95% interval of the mean; None under two values."""
    import numpy as np
    from scipy import stats

    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    sem = float(stats.sem(arr))
    if sem == 0 or math.isnan(sem):
        return (float(arr.mean()), float(arr.mean()))
    lo, hi = stats.t.interval(0.95, len(arr) - 1, loc=float(arr.mean()), scale=sem)
    return (float(lo), float(hi))


@dataclass(frozen=True)
class Summary:
    n: int
    median: float | None
    p95: float | None
    min: float | None
    max: float | None
    cv: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        vals = [float(v) for v in values]
        return cls(n=len(vals), median=median(vals), p95=percentile(vals, 95),
                   min=min(vals) if vals else None, max=max(vals) if vals else None, cv=cv(vals))


BOOTSTRAP_RESAMPLES = 2000


def median_ci95(values: Sequence[float], seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval of the median (percentile method, BOOTSTRAP_RESAMPLES resamples, seeded
    so a report regenerates byte for byte); None under two values. Identical values: (v, v).

    The resampling is numpy's, in one array (resamples x n): what scipy.stats.bootstrap's percentile
    method computes, without its per-call overhead (a report draws one interval per plotted point:
    10,000 cases took minutes through scipy). tests/test_report_plots.py checks it against scipy."""
    import numpy as np

    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size < 2:
        return None
    if float(arr.min()) == float(arr.max()):
        return (float(arr[0]), float(arr[0]))
    rng = np.random.default_rng(seed)
    medians = np.median(arr[rng.integers(0, arr.size, size=(BOOTSTRAP_RESAMPLES, arr.size))], axis=1)
    lo, hi = (float(v) for v in np.percentile(medians, [2.5, 97.5]))
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None
