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

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pytest_moeperf.metrics import schema
from pytest_moeperf.metrics.schema import Metric
from pytest_moeperf.gate.baseline import pool_runs
from pytest_moeperf.gate.hodges_lehmann import hodges_lehmann
from pytest_moeperf.results.documents import SERVING, SOURCE_KEY, bench_key, extra_kind, gpu_name
from pytest_moeperf.gate.config import EAGER_BACKEND, GateConfig, MIB, SINGLE_RUN_DRIFT_PRIOR_DOF, UNGATED_MEMORY_METRICS
from pytest_moeperf.gate.statistics import _bad, _finite, _finite_list, _one_sided_p, _rel_pct, _remove_margin, _scalar, _z, _z_sum, drift_pct, mde_pct, rounds_needed, spread_pct, total_mde_pct
from pytest_moeperf.gate.verdicts import BenchmarkResult, FAIL, GateResult, INCONCLUSIVE, METHOD_MWU, METHOD_NONE, METHOD_SUMMARY, METHOD_THRESHOLD, METHOD_TOLERANCE, MetricComparison, PASS, SKIPPED, WARN, worst


@dataclass(frozen=True)
class RunDrift:
    """The run-to-run drift a comparison allows for: measured over the runs' medians, or assumed."""

    pct: float | None
    runs: int  # baseline runs it is averaged over (1 for an offset between machines)
    head_runs: int
    machines: bool  # an assumed offset between machines: more runs do not average it out
    note: str  # how it was found, for the verdict's reason


def run_drift(base: np.ndarray, head: np.ndarray, run_medians: Sequence[float] = (),
              head_run_medians: Sequence[float] = (), prior_drift_pct: float | None = None,
              single_run_drift_pct: float | None = None) -> RunDrift:
    drift = drift_pct(run_medians, head_run_medians)
    runs = max(len(_finite_list(run_medians)), 1)
    head_runs = max(len(_finite_list(head_run_medians)), 1)
    note = (f", run-to-run drift {drift:.1f}% over {runs} baseline + {head_runs} current runs"
            if drift is not None else "")
    if prior_drift_pct:
        # another machine: stored runs that agree with each other (all from the baseline's
        # machine) say nothing about the drift between machines. Assume the measured one, or
        # the rounds' own spread where that is wider: a host-bound eager decode whose rounds
        # scatter by CV 10-20% moved its median by up to 36% between two H200 machines.
        assumed = max(prior_drift_pct, math.hypot(spread_pct(base), spread_pct(head)) / math.sqrt(2))
        if drift is None or drift < assumed:
            # a machine's offset does not average out over more runs on either machine
            return RunDrift(assumed, 1, 1, True,
                            f", incl. an assumed {assumed:.1f}% drift between machines (baseline from another GPU)")
    elif single_run_drift_pct:
        # the drift measured between processes on one H200, as a prior: alone with one run a
        # side, pooled with the measured drift (weighted by degrees of freedom) with more
        dof = runs + head_runs - 2
        if drift is None:
            drift = single_run_drift_pct
            note = (f", incl. an assumed {drift:g}% drift between runs (one run a side: pass several "
                    f"runs, e.g. compare BASE_DIR RUN1 RUN2 RUN3)")
        else:
            k0 = SINGLE_RUN_DRIFT_PRIOR_DOF
            drift = math.sqrt((k0 * single_run_drift_pct ** 2 + dof * drift ** 2) / (k0 + dof))
            note = (f", run-to-run drift {drift:.1f}% ({runs} baseline + {head_runs} current runs, "
                    f"pooled with the assumed {single_run_drift_pct:g}%)")
    return RunDrift(drift, runs, head_runs, False, note)


def compare_samples(metric: Metric, base: np.ndarray, head: np.ndarray, config: GateConfig,
                    run_medians: Sequence[float] = (), prior_drift_pct: float | None = None,
                    single_run_drift_pct: float | None = None,
                    head_run_medians: Sequence[float] = ()) -> MetricComparison:
    thr = config.threshold_pct(metric.key)
    med_b, med_h = float(np.median(base)), float(np.median(head))
    change = _rel_pct(med_h - med_b, med_b)
    hl = _rel_pct(hodges_lehmann(head, base), med_b)
    worse = "greater" if metric.direction == "lower" else "less"
    better = "less" if worse == "greater" else "greater"
    p_bad = _one_sided_p(head, base, worse)
    drift = run_drift(base, head, run_medians, head_run_medians, prior_drift_pct, single_run_drift_pct)
    mde = total_mde_pct(mde_pct(base, head, config.alpha, config.power), drift.pct, drift.runs, config.alpha,
                        config.power, drift.head_runs)
    common = dict(metric=metric.key, unit=metric.unit, direction=metric.direction, baseline=med_b,
                  current=med_h, change_pct=change, p_value=p_bad, mde_pct=mde, threshold_pct=thr,
                  method=METHOD_MWU, n_baseline=int(base.size), n_current=int(head.size), hl_change_pct=hl,
                  drift_pct=drift.pct, baseline_runs=drift.runs, current_runs=drift.head_runs)
    if change is None:
        return MetricComparison(**common, verdict=WARN, reason="baseline median is 0: change not expressible in %")

    bad, bad_hl = _bad(metric, change), _bad(metric, hl)
    if bad > thr and bad_hl is not None and bad_hl > thr:
        verdict, reason, need = _beyond_threshold(metric, base, head, config, drift, mde, p_bad, bad, bad_hl)
        return MetricComparison(**common, verdict=verdict, reason=reason, suggested_rounds=need)
    if p_bad < config.alpha and bad > 0:
        return MetricComparison(**common, verdict=WARN,
                                reason=f"significantly worse by {bad:.1f}% (p={p_bad:.2g}), under {thr:g}%")
    imp = config.improvement_pct(metric.key)
    # the U test for an improvement matters only here: run it last (a U test on a serving point's
    # pooled requests sorts every sample)
    if -bad > imp and bad_hl is not None and -bad_hl > imp and _one_sided_p(head, base, better) < config.alpha:
        return MetricComparison(**common, verdict=WARN,
                                reason=f"improved by {-bad:.1f}% > {imp:g}%: refresh the baseline")
    note = f"; detectable effect {mde:.1f}% > {thr:g}%" if mde > thr else ""
    return MetricComparison(**common, verdict=PASS, reason=f"within {thr:g}%{note}")


def _beyond_threshold(metric: Metric, base: np.ndarray, head: np.ndarray, config: GateConfig, drift: RunDrift,
                      mde: float, p_bad: float, bad: float, bad_hl: float) -> tuple[str, str, int | None]:
    """(verdict, reason, suggested rounds) of a change worse than the threshold by its median and
    its HL shift: FAIL where the rule can tell it from noise, else INCONCLUSIVE with what would."""
    thr = config.threshold_pct(metric.key)
    worse = "greater" if metric.direction == "lower" else "less"
    significant = p_bad < config.alpha

    def p_margin() -> float:  # only on the branches that need it: a U test sorts every sample
        return _one_sided_p(_remove_margin(metric, head, config.margin_fraction * thr), base, worse)

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
    if significant and beyond_drift and (mde <= thr or clear) and p_margin() < config.alpha:
        how = "" if mde <= thr else f", beyond threshold + detectable effect {thr + mde:.1f}%"
        return FAIL, f"worse by {bad:.1f}% > {thr:g}% (p={p_bad:.2g}, HL {bad_hl:.1f}%{how})", None
    # the drift part of the MDE does not shrink with rounds: size the rounds for what is left
    between = (total_mde_pct(0.0, drift.pct, drift.runs, config.alpha, config.power, drift.head_runs)
               if drift.pct is not None else 0.0)
    if between >= thr:
        if drift.machines:
            fix = "measure the baseline on this GPU"
        else:
            # runs a side for which the drift part falls to 80% of the threshold
            n = math.ceil(2.0 * (_z_sum(config.alpha, config.power) * drift.pct / (0.8 * thr)) ** 2)
            fix = f"compare {n} or more runs a side (compare BASE_DIR RUN1 ... RUN{n})"
        return INCONCLUSIVE, (f"detectable effect {mde:.1f}% > threshold {thr:g}%{drift.note}: run-to-run drift "
                              f"alone ({between:.1f}%) exceeds the threshold, so more rounds cannot settle it; "
                              f"{fix}"), None
    need = rounds_needed(base, head, math.sqrt(thr ** 2 - between ** 2), config.alpha, config.power)
    if mde > thr:
        why = f"detectable effect {mde:.1f}% > threshold {thr:g}% (spread too wide{drift.note})"
    elif significant:
        margin_pct = config.margin_fraction * thr
        why = (f"worse by {bad:.1f}% but not significantly more than {margin_pct:g}% "
               f"(p={p_margin():.2g} >= {config.alpha:g})")
        need = max(need, 2 * max(base.size, head.size))
    else:
        why = f"worse by {bad:.1f}% but not significant (p={p_bad:.2g} >= {config.alpha:g})"
        need = max(need, 2 * max(base.size, head.size))
    return INCONCLUSIVE, f"{why}; more rounds suggested: {need}", need


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


def invalid_value(extra: Mapping[str, Any], key: str) -> str | None:
    """Why a metric's value is not a measurement (None when it is one or is absent/null): every metric
    of the registry is a finite, non-negative number, so NaN, a string or a negative value is a
    broken document, which must not read as "not measured" (SKIPPED) or as an improvement."""
    v = extra.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"{v!r} is not a number"
    if not math.isfinite(v):
        return f"{v!r} is not a finite number"
    return f"{v!r} is negative" if v < 0 else None


def _invalid(metric: Metric, base_extra: Mapping[str, Any], head_extra: Mapping[str, Any]) -> MetricComparison | None:
    for side, extra in (("this run", head_extra), ("the baseline", base_extra)):
        why = invalid_value(extra, metric.key)
        if why:
            return MetricComparison(metric=metric.key, unit=metric.unit, direction=metric.direction,
                                    baseline=_scalar(base_extra, metric.key), current=_scalar(head_extra, metric.key),
                                    change_pct=None, p_value=None, mde_pct=None, threshold_pct=None, method=METHOD_NONE,
                                    verdict=INCONCLUSIVE,
                                    reason=f"invalid in {side}: {metric.key} {why}; regenerate that run's JSON")
    return None


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
    samples = extra.get("samples")
    if not metric.samples or not isinstance(samples, Mapping):
        return None
    # statistics.median on the finite values: the same two middle values and (a + b) / 2 as
    # np.median, without numpy's per-call overhead (compare --all-runs takes one per stored run
    # per metric per case: 90,000 for 100 runs of 100 cases)
    vals = _finite_list_of(samples.get(metric.samples))
    return statistics.median(vals) if vals else None


def _finite_list_of(values: Any) -> list[float]:
    if not isinstance(values, (list, tuple)):
        return []
    if set(map(type, values)) <= {float}:  # the usual list from JSON, checked in one C-level pass
        return [v for v in values if math.isfinite(v)]
    return [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def compare_metric(metric: Metric, base_extra: Mapping[str, Any], head_extra: Mapping[str, Any],
                   config: GateConfig, history: Sequence[Mapping[str, Any]] = (),
                   cross_machine: bool = False,
                   head_history: Sequence[Mapping[str, Any]] = ()) -> MetricComparison | None:
    """None when the metric is measured on neither side. ``history``: extra_info of every stored
    baseline run of this benchmark (the newest included), for the run-to-run drift."""
    base_b, head_b = _samples(base_extra, metric), _samples(head_extra, metric)
    base_v, head_v = _scalar(base_extra, metric.key), _scalar(head_extra, metric.key)
    invalid = _invalid(metric, base_extra, head_extra)
    if invalid is not None:
        return invalid
    if base_b.size >= 2 and head_b.size >= 2:
        medians = [m for m in (run_median(h, metric) for h in history) if m is not None]
        prior = config.cross_machine_drift_pct.get(metric.kind) if cross_machine else None
        head_medians = [m for m in (run_median(h, metric) for h in head_history) if m is not None]
        # a serving load point (continuous batching, host-scheduled) gets the host-bound eager prior
        # until its run-to-run drift is measured on a GPU
        eager = (EAGER_BACKEND in (head_extra.get("backend"), base_extra.get("backend"))
                 or extra_kind(head_extra) == SERVING)
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


def _throttled(extra: Mapping[str, Any]) -> int:
    v = extra.get("throttled_rounds")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 else 0


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
