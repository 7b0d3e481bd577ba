"""The gate's statistics: one-sided U test, minimum detectable effect, autocorrelation, run-to-run drift."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pytest_moeperf.metrics.schema import Metric


def _finite(values: Any) -> np.ndarray:
    if not isinstance(values, (list, tuple)):
        return np.empty(0)
    if set(map(type, values)) <= {float, int}:  # the usual list from JSON: one C-level conversion
        arr = np.asarray(values, dtype=float)
        return arr[np.isfinite(arr)]
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


@functools.lru_cache(maxsize=64)  # a handful of distinct q; scipy's ppf costs ~1 ms a call
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
