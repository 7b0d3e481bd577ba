"""The A/B decision: paired run ratios, an interval that stays valid under optional stopping, three outcomes.

Pure functions over pytest-benchmark documents (no printing, no processes). Base (A) and head (B)
are measured interleaved on one GPU; each pair of neighbouring runs gives one ratio per metric
(B's run median / A's), so whatever moves the machine slowly (clocks, temperature, the board)
cancels inside the pair. Per benchmark and metric, over the n pairs so far:

    d_i = ln(B_i / A_i);  interval = mean(d) -+ t(1 - alpha / (2 K), n - 1) * sd(d) / sqrt(n)

reported as percent (exp - 1). With T the metric's A/B threshold (schema.AB_THRESHOLD_BY_KIND_PCT):

    FAIL          the whole interval is worse than +T   (outcome "worse")
    PASS          the whole interval lies inside -+T    (outcome "same": equivalence, as Pinpoint's SAME)
    PASS          the whole interval is better than -T  (outcome "better")
    INCONCLUSIVE  otherwise: the smallest change these pairs could show, and about how many pairs would settle it

Optional stopping: the runner looks after every pair from ``min_pairs`` to ``max_pairs``, so there
are K = max_pairs - min_pairs + 1 planned looks, fixed before the first run. Each look's interval is
at confidence 1 - alpha / K (Bonferroni over the looks): the chance that ANY look's interval misses
the true ratio is at most alpha, so stopping at the first decided look keeps a false FAIL (true
change <= T, interval wholly above T) below alpha / 2, whatever the data do. Bonferroni is
conservative for correlated looks (a Pocock or alpha-spending boundary is a little narrower) but
needs no assumption about when the runner stops: the budget in minutes may end it early, which only
removes looks. Ratios are of run medians, so a metric needs one value per run: extra_info[metric].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_moeperf.results.documents import bench_key
from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, PASS
from pytest_moeperf.metrics import schema

WORSE, SAME, BETTER, UNDECIDED = "worse", "same", "better", "undecided"
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class PairedMetric:
    bench: str
    metric: str
    unit: str
    direction: str  # which way is better
    threshold_pct: float
    pairs: int
    change_pct: float | None  # geometric mean of B/A, minus 1, percent (+: B larger)
    ci_low_pct: float | None
    ci_high_pct: float | None
    confidence: float
    p_value: float | None  # paired t-test on the log ratios, two-sided (not what decides: the interval does)
    mde_pct: float | None  # the smallest change these pairs find with the stated power
    pairs_to_settle: int | None  # about how many pairs in all would decide it at the current spread
    verdict: str
    outcome: str
    ratios: tuple[float, ...] = field(default=(), repr=False)

    def line(self) -> str:
        """One terminal line, <= 120 characters: the case's id rather than the whole test path."""
        case = self.bench.rsplit("[", 1)[-1].rstrip("]") if "[" in self.bench else self.bench
        if self.change_pct is None:
            return f"{self.verdict:<12} {self.metric:<14} {self.outcome}: {self.pairs} pairs, {case}"[:120]
        ci = f"[{self.ci_low_pct:+.1f}, {self.ci_high_pct:+.1f}]"
        tail = f", {settle_text(self.pairs_to_settle)}" if self.verdict == INCONCLUSIVE else ""
        text = (f"{self.verdict:<12} {self.metric:<14} {self.change_pct:+.1f}% {ci} thr {self.threshold_pct:g}% "
                f"n={self.pairs}{tail} {case}")
        return text[:120]


def _t_quantile(q: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, dof))


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def decide_ratios(ratios: Sequence[float], metric: schema.Metric, threshold_pct: float, *, alpha: float = DEFAULT_ALPHA,
                  looks: int = 1, power: float = DEFAULT_POWER, bench: str = "") -> PairedMetric:
    """The verdict of one benchmark's metric from its pairs' ratios B/A (each > 0)."""
    rs = tuple(float(r) for r in ratios if isinstance(r, (int, float)) and math.isfinite(r) and r > 0)
    n = len(rs)
    looks = max(int(looks), 1)
    conf = 1.0 - alpha / looks
    base = dict(bench=bench, metric=metric.key, unit=metric.unit, direction=metric.direction,
                threshold_pct=threshold_pct, pairs=n, confidence=conf, ratios=rs)
    if n < 2:
        return PairedMetric(**base, change_pct=None, ci_low_pct=None, ci_high_pct=None, p_value=None, mde_pct=None,
                            pairs_to_settle=2, verdict=INCONCLUSIVE, outcome=UNDECIDED)
    d = [math.log(r) for r in rs]
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    se = sd / math.sqrt(n)
    q = _t_quantile(1.0 - alpha / (2 * looks), n - 1)
    lo, hi = mean - q * se, mean + q * se
    p = _paired_p(mean, se, n)
    mde = (q + _t_quantile(power, n - 1)) * se
    outcome = classify(lo, hi, metric.direction, threshold_pct)
    verdict = {WORSE: FAIL, SAME: PASS, BETTER: PASS}.get(outcome, INCONCLUSIVE)
    settle = None if outcome != UNDECIDED else pairs_to_settle(mean, sd, n, threshold_pct, alpha, looks)
    pct = lambda x: math.expm1(x) * 100.0  # noqa: E731
    return PairedMetric(**base, change_pct=pct(mean), ci_low_pct=pct(lo), ci_high_pct=pct(hi), p_value=p,
                        mde_pct=pct(mde), pairs_to_settle=settle, verdict=verdict, outcome=outcome)


def _paired_p(mean: float, se: float, n: int) -> float:
    from scipy.stats import t

    if se == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * t.sf(abs(mean / se), n - 1))


def classify(lo: float, hi: float, direction: str, threshold_pct: float) -> str:
    """lo/hi: the interval of ln(B/A). worse / same / better / undecided against +-threshold."""
    t = math.log1p(threshold_pct / 100.0)
    worse_lo, worse_hi = (lo, hi) if direction == "lower" else (-hi, -lo)  # in "worse is +" terms
    if worse_lo > t:
        return WORSE
    if worse_hi < -t:
        return BETTER
    if worse_lo >= -t and worse_hi <= t:
        return SAME
    return UNDECIDED


SETTLE_SHOWN_MAX = 100  # beyond this many pairs the estimate is shown as "> 100": the change sits near the threshold


def settle_text(pairs: int | None) -> str:
    """What a view prints for :func:`pairs_to_settle`: "~N pairs", "> 100 pairs" or "at the threshold"."""
    if pairs is None:
        return "at the threshold"
    return f"> {SETTLE_SHOWN_MAX} pairs" if pairs > SETTLE_SHOWN_MAX else f"~{pairs} pairs"


def pairs_to_settle(mean: float, sd: float, n: int, threshold_pct: float, alpha: float, looks: int) -> int | None:
    """About how many pairs in all make the interval narrow enough to decide, if mean and sd stay as they are.

    None where the estimate sits on the threshold (no number of pairs settles it)."""
    gap = abs(abs(mean) - math.log1p(threshold_pct / 100.0))
    if gap <= 1e-12:
        return None
    z = _z(1.0 - alpha / (2 * max(looks, 1)))
    return max(n + 1, math.ceil((z * sd / gap) ** 2) + 1)


def run_value(bench: Mapping[str, Any], metric: str) -> float | None:
    v = (bench.get("extra_info") or {}).get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def benches_by_key(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {bench_key(b): b for b in doc.get("benchmarks") or [] if isinstance(b, Mapping)}


def decide(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], *, metrics: Sequence[str] | None = None,
           thresholds_pct: Mapping[str, float] | None = None, alpha: float = DEFAULT_ALPHA,
           looks: int = 1) -> list[PairedMetric]:
    """Every benchmark present in every run of both sides x every metric they all hold: one PairedMetric each.

    pairs: (A document, B document) per pair, in the order measured."""
    if not pairs:
        return []
    wanted = tuple(metrics or schema.AB_DEFAULT_METRICS)
    indexed = [(benches_by_key(a), benches_by_key(b)) for a, b in pairs]
    common = set(indexed[0][0])
    for a, b in indexed:
        common &= set(a) & set(b)
    out = []
    for key in sorted(common):
        for name in wanted:
            metric = schema.METRICS_BY_KEY.get(name)
            if metric is None:
                continue
            vals = [(run_value(a[key], name), run_value(b[key], name)) for a, b in indexed]
            if any(x is None or y is None or x <= 0 for x, y in vals):
                continue
            thr = (thresholds_pct or {}).get(name, metric.ab_threshold_pct)
            out.append(decide_ratios([y / x for x, y in vals], metric, thr, alpha=alpha, looks=looks, bench=key))
    return out


def overall(results: Sequence[PairedMetric]) -> str:
    """FAIL if any metric FAILs, PASS if every metric is decided and none FAILs, else INCONCLUSIVE."""
    if not results:
        return INCONCLUSIVE
    if any(r.verdict == FAIL for r in results):
        return FAIL
    return PASS if all(r.outcome != UNDECIDED for r in results) else INCONCLUSIVE


def unknown_metrics(metrics: Sequence[str]) -> list[str]:
    return [m for m in metrics if m not in schema.METRICS_BY_KEY]
