"""The gate's decision rule (pytest_moeperf.gate.decision): unit and property tests. Whole documents,
the configuration and the renderers: test_gate_documents.py; run-to-run drift: test_gate_drift.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_moeperf.gate import config as gate_config
from pytest_moeperf.gate import decision as gate_decision
from pytest_moeperf.gate import gate_run
from pytest_moeperf.gate import statistics as gate_stats
from pytest_moeperf.gate import verdicts as gate_verdicts
from pytest_moeperf.metrics import schema
from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, PASS, SKIPPED, WARN
from pytest_moeperf.gate.config import GateConfig
from pytest_moeperf.gate.gate_render import render_text


SAMPLED = [m for m in schema.METRICS if m.samples]
CFG = GateConfig()
GIB = 1 << 30
MIB = 1 << 20
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- helpers ------------------------------------------------------------------------------

def extra(samples: dict[str, list[float]] | None = None, **scalars) -> dict:
    """extra_info with every required key (null unless given) and the given samples."""
    out = {k: None for k in schema.REQUIRED_KEYS}
    out["samples"] = {} if samples is None else dict(samples)
    for metric_key, values in (samples or {}).items():
        metric = next(m for m in schema.METRICS if m.samples == metric_key)
        out[metric.key] = float(np.median(values))
    out.update(scalars)
    return out


def bench(name: str = "test_generate[tiny]", extra_info: dict | None = None) -> dict:
    return {"name": name, "fullname": f"benchmarks/test_deployment.py::{name}", "params": {},
            "stats": {"min": 1.0, "max": 1.0, "mean": 1.0, "median": 1.0, "stddev": 0.0, "rounds": 1},
            "extra_info": extra_info if extra_info is not None else extra()}


def doc(*benches: dict, gpu: str | None = "NVIDIA H200") -> dict:
    return {"machine_info": {"gpu": {"name": gpu} if gpu else None}, "commit_info": {}, "benchmarks": list(benches),
            "datetime": "2025-01-01T00:00:00", "version": "5.2.3"}


def cmp_samples(metric_key: str, base, head, config: GateConfig = CFG) -> gate_verdicts.MetricComparison:
    metric = schema.METRICS_BY_KEY[metric_key]
    return gate_decision.compare_samples(metric, np.asarray(base, float), np.asarray(head, float), config)


def normal(seed: int, center: float, cv: float, n: int) -> list[float]:
    return list(np.random.default_rng(seed).normal(center, cv * center, n))


def bimodal(rng: np.random.Generator, p_high: float, n: int) -> np.ndarray:
    high = rng.random(n) < p_high
    return np.where(high, 3.7, 2.6) + rng.normal(0, 0.03, n)


# -- the acceptance cases from the brief --------------------------------------------------

def tpot_doc(tpot: list[float]) -> dict:
    return doc(bench(extra_info=extra({"tpot_ms": tpot, "decode_tokens_per_s": [64000 / t for t in tpot]})))


def h200_like_runs(rng: np.random.Generator, center: float, runs: int, drift: float = 0.035,
                   cv: float = 0.03, rounds: int = 10) -> list[dict]:
    """Separate runs as the H200 gave them (static backend): each run's level drifts by CV 3.5%
    (measured: 3.0% and 3.6% over three processes in each of two leases), rounds CV 3% around it."""
    return [tpot_doc(list(rng.normal(level, cv * level, rounds)))
            for level in rng.normal(center, drift * center, runs)]


def tpot_verdicts(result: gate_verdicts.GateResult) -> dict[str, str]:
    return {m.metric: m.verdict for m in result.benchmarks[0].metrics}


@pytest.mark.parametrize("seed", range(20))
def test_10pct_decode_slowdown_one_run_a_side(seed):
    # one run a side: within-run spread alone would call it, but the run-to-run drift measured
    # on the H200 (3.5%) cannot be seen in one run, so it is assumed and the verdict is
    # INCONCLUSIVE with the number of runs that would settle it, never PASS
    tpot_b, tpot_h = normal(seed, 20.0, 0.03, 10), normal(1000 + seed, 22.0, 0.03, 10)
    result = gate_run.compare_documents([tpot_doc(tpot_b)], tpot_doc(tpot_h), CFG)
    assert tpot_verdicts(result) == {"tpot_ms": INCONCLUSIVE, "decode_tokens_per_s": INCONCLUSIVE}
    assert "runs a side" in result.benchmarks[0].metrics[0].reason
    # a machine whose drift was measured to be negligible (run_drift_pct = 0) FAILs it
    quiet = gate_run.compare_documents([tpot_doc(tpot_b)], tpot_doc(tpot_h), GateConfig(
        single_run_drift_pct={k: 0.0 for k in gate_config.DEFAULT_SINGLE_RUN_DRIFT_PCT}))
    assert tpot_verdicts(quiet) == {"tpot_ms": FAIL, "decode_tokens_per_s": FAIL}


def test_10pct_decode_slowdown_fails_with_eight_runs_a_side_at_h200_drift():
    # the recipe in docs/gate.md: 8 runs a side FAIL a 10% slowdown ~80% of the time at the
    # H200's drift (5 runs: ~45%), the rest INCONCLUSIVE or WARN, never PASS
    rng = np.random.default_rng(11)
    verdicts = []
    for _ in range(40):
        base, head = h200_like_runs(rng, 20.0, 8), h200_like_runs(rng, 22.0, 8)
        verdicts.append(tpot_verdicts(gate_run.compare_documents(base, head, CFG))["tpot_ms"])
    assert PASS not in verdicts
    assert verdicts.count(FAIL) >= 0.65 * len(verdicts), verdicts


def test_same_code_runs_at_h200_drift_never_fail():
    # one run a side, and five: the same code with the H200's run-to-run drift
    rng = np.random.default_rng(12)
    for runs in (1, 1, 5, 8):
        for _ in range(100):
            base, head = h200_like_runs(rng, 20.0, runs), h200_like_runs(rng, 20.0, runs)
            result = gate_run.compare_documents(base, head if runs > 1 else head[0], CFG)
            assert result.verdict != FAIL, render_text(result)


def eager_runs(rng: np.random.Generator, center: float, runs: int, drift: float = 0.085, cv: float = 0.05,
               rounds: int = 15) -> list[dict]:
    """Separate eager-backend runs as one H200 lease gave them: run medians CV 8.5%
    (2575/2637/3008 ms), rounds CV 5-10% around each run's level."""
    docs = h200_like_runs(rng, center, runs, drift, cv, rounds)
    for d in docs:
        d["benchmarks"][0]["extra_info"]["backend"] = "eager"
    return docs


def test_same_code_eager_runs_never_fail_one_run_a_side():
    # at the static backend's 3.5% prior this FAILed the same code ~5% of the time
    rng = np.random.default_rng(13)
    for _ in range(150):
        base, head = eager_runs(rng, 40.0, 1), eager_runs(rng, 40.0, 1)
        result = gate_run.compare_documents(base, head[0], CFG)
        assert result.verdict != FAIL, render_text(result)


def test_eager_backend_assumes_a_wider_drift_than_static():
    # tight rounds, runs 30% apart: a static case FAILs it, an eager case (whose runs drift by
    # ~8.5% on the H200) calls it INCONCLUSIVE, the drift shown; a large eager change still FAILs
    tight_b, tight_h = normal(1, 40.0, 0.02, 15), normal(2, 52.0, 0.02, 15)
    def verdict(backend, head=tight_h):
        docs = [tpot_doc(tight_b), tpot_doc(head)]
        for d in docs:
            d["benchmarks"][0]["extra_info"]["backend"] = backend
        return next(m for m in gate_run.compare_documents([docs[0]], docs[1], CFG).benchmarks[0].metrics
                    if m.metric == "tpot_ms")
    assert verdict("static").verdict == FAIL
    eager = verdict("eager")
    assert eager.verdict == INCONCLUSIVE and eager.drift_pct == 12.0
    assert verdict("eager", normal(3, 80.0, 0.02, 15)).verdict == FAIL


def test_same_code_never_fails_at_measured_h200_noise():
    rng = np.random.default_rng(7)
    for _ in range(150):
        for base, head in ((rng.normal(20, 0.6, 10), rng.normal(20, 0.6, 10)),   # decode, CV 3%
                           (bimodal(rng, 0.5, 10), bimodal(rng, 0.5, 10))):      # eager decode, CV ~18%
            for key in ("tpot_ms", "decode_tokens_per_s", "e2e_tokens_per_s"):
                assert cmp_samples(key, base, head).verdict != FAIL


def test_same_code_false_fail_rate_is_small_where_spread_is_near_the_threshold():
    # Energy windows at CV 8%, 6 windows: the true detectable effect (11.5%) exceeds the 8%
    # threshold, but a sample SD that comes out low by chance can hide that. The margin test
    # keeps such false FAILs near 0.1% per metric (docs/gate.md); check it stays well under 1%.
    rng = np.random.default_rng(8)
    fails = sum(cmp_samples("energy_j", rng.normal(50, 4, 6), rng.normal(50, 4, 6)).verdict == FAIL
                for _ in range(400))
    assert fails <= 4


def test_mixing_ratio_swing_of_bimodal_noise_is_inconclusive_not_fail():
    # 8 fast/2 slow rounds against 2 fast/8 slow: medians a whole mode apart, p tiny.
    # MAD and IQR see only one mode here; the SD-based detectable effect sees both.
    base = [2.6, 2.61, 2.59, 2.6, 2.62, 2.58, 2.6, 2.61, 3.7, 3.71]
    head = [2.6, 2.59, 3.7, 3.69, 3.71, 3.7, 3.72, 3.68, 3.7, 3.71]
    c = cmp_samples("tpot_ms", base, head)
    assert c.p_value < 0.05 and c.change_pct > 5
    assert c.verdict == INCONCLUSIVE
    assert "more rounds suggested" in c.reason and c.suggested_rounds > 10


# -- properties -------------------------------------------------------------------------

sample_lists = st.lists(st.floats(1.0, 1000.0), min_size=2, max_size=30)


@PROPS
@given(values=sample_lists, metric=st.sampled_from(SAMPLED))
def test_identical_samples_never_fail(values, metric):
    c = gate_decision.compare_samples(metric, np.asarray(values), np.asarray(values), CFG)
    assert c.verdict == PASS
    assert c.change_pct == 0


noise = st.lists(st.floats(-0.01, 0.01), min_size=5, max_size=30)


@PROPS
@given(base_noise=noise, head_noise=noise, metric=st.sampled_from(SAMPLED), shift=st.floats(0.3, 0.6),
       center=st.floats(0.5, 5000.0))
def test_large_shift_with_small_spread_fails_only_in_bad_direction(base_noise, head_noise, metric, shift, center):
    base = center * (1 + np.asarray(base_noise))
    worse = 1 + shift if metric.direction == "lower" else 1 - shift
    better = 1 - shift if metric.direction == "lower" else 1 + shift
    head = center * (1 + np.asarray(head_noise))
    assert gate_decision.compare_samples(metric, base, head * worse, CFG).verdict == FAIL
    improved = gate_decision.compare_samples(metric, base, head * better, CFG)
    assert improved.verdict == WARN and "refresh the baseline" in improved.reason


@PROPS
@given(metric=st.sampled_from(SAMPLED), n=st.integers(4, 12), width=st.floats(0.25, 0.5),
       shift_over_thr=st.floats(1.5, 3.0), seed=st.integers(0, 2**32 - 1))
def test_wide_spread_gives_inconclusive_not_fail(metric, n, width, shift_over_thr, seed):
    rng = np.random.default_rng(seed)
    shape = 1 + width * np.linspace(-1, 1, n)  # a fixed, wide spread
    shift = shift_over_thr * CFG.threshold_pct(metric.key) / 100
    factor = 1 + shift if metric.direction == "lower" else 1 / (1 + shift)
    base, head = 100 * rng.permutation(shape), 100 * factor * rng.permutation(shape)
    c = gate_decision.compare_samples(metric, base, head, CFG)
    assert c.mde_pct > c.threshold_pct
    assert c.verdict == INCONCLUSIVE
    assert c.suggested_rounds and c.suggested_rounds > n


@PROPS
@given(seed=st.integers(0, 2**32 - 1), p_high=st.floats(0.2, 0.8), n_base=st.integers(8, 30),
       n_head=st.integers(8, 30), metric=st.sampled_from(SAMPLED))
def test_same_bimodal_distribution_never_fails(seed, p_high, n_base, n_head, metric):
    rng = np.random.default_rng(seed)
    c = gate_decision.compare_samples(metric, bimodal(rng, p_high, n_base), bimodal(rng, p_high, n_head), CFG)
    assert c.verdict != FAIL


# -- statistics details ----------------------------------------------------------------

def test_mde_formula_uses_sample_sd_and_base_median():
    # rounds without lag-1 autocorrelation (the products of neighbouring deviations sum < 0)
    base, head = np.array([10.0, 9.0, 11.0]), np.array([20.0, 22.0, 19.0, 21.0])
    z = 1.6448536269514722 + 0.8416212335729143
    expected = 100 * z * math.sqrt(np.var(base, ddof=1) / 3 + np.var(head, ddof=1) / 4) / 10.0
    assert gate_stats.mde_pct(base, head, 0.05, 0.8) == pytest.approx(expected)


def test_correlated_rounds_widen_the_detectable_effect():
    # the same values in a slow drift (as static-backend TPOT on the H200, lag-1 r 0.3-0.8)
    # carry fewer independent rounds than when shuffled
    trend = np.linspace(9.0, 11.0, 20)
    shuffled = np.random.default_rng(0).permutation(trend)
    assert gate_stats.lag1_autocorrelation(trend) > 0.8
    assert gate_stats.variance_inflation(trend) == pytest.approx(
        (1 + gate_stats.lag1_autocorrelation(trend)) / (1 - gate_stats.lag1_autocorrelation(trend)))
    assert gate_stats.mde_pct(trend, trend, 0.05, 0.8) > 2 * gate_stats.mde_pct(shuffled, shuffled, 0.05, 0.8)
    assert gate_stats.lag1_autocorrelation(np.array([1.0, 3.0, 1.0, 3.0, 1.0])) == 0.0  # clipped, no credit
    assert gate_stats.lag1_autocorrelation(np.array([5.0, 5.0, 5.0])) == 0.0


def test_drift_pools_both_sides_and_single_run_prior_is_shrunk_toward_measured():
    assert gate_stats.drift_pct([10.0], [10.0]) is None
    assert gate_stats.drift_pct([9.0, 11.0], [20.0]) == pytest.approx(100 * math.sqrt(2) / (40 / 3))
    # two runs agreeing by chance: the pooled drift stays near the 3.5% prior
    runs = [tpot_doc(normal(s, 20.0, 0.01, 10)) for s in (1, 2)]
    m = gate_run.compare_documents(runs, tpot_doc(normal(3, 20.0, 0.01, 10)), CFG).benchmarks[0].metrics[0]
    assert m.baseline_runs == 2 and m.current_runs == 1 and 2.5 < m.drift_pct < 3.5


def test_too_few_rounds_for_the_test_is_inconclusive():
    # 3 vs 3 rounds: the exact one-sided U test cannot reach p < 0.05 at all
    assert gate_stats.min_rounds_for_alpha(0.05) == 4
    c = cmp_samples("tpot_ms", [10.0, 10.01, 9.99], [13.0, 13.01, 12.99])
    assert c.verdict == INCONCLUSIVE and c.suggested_rounds >= 4


def test_significant_small_slowdown_warns():
    c = cmp_samples("tpot_ms", normal(1, 10.0, 0.005, 20), normal(2, 10.2, 0.005, 20))
    assert c.verdict == WARN and "under 7%" in c.reason


def test_constant_samples_compare_cleanly():
    assert cmp_samples("ttft_ms", [5.0] * 5, [5.0] * 5).verdict == PASS
    assert cmp_samples("ttft_ms", [5.0] * 5, [6.0] * 5).verdict == FAIL


# -- memory, summary and threshold-only paths ----------------------------------------------

@pytest.mark.parametrize(("base", "head", "verdict"), [
    (10 * GIB, 10 * GIB + 200 * MIB, PASS),      # floor 256 MiB > 2% (205 MiB)
    (10 * GIB, 10 * GIB + 300 * MIB, FAIL),
    (100 * GIB, 101.5 * GIB, PASS),              # 2% = 2 GiB > floor
    (100 * GIB, 102.5 * GIB, FAIL),
    (100 * GIB, 97 * GIB, WARN),                 # shrank beyond tolerance: refresh
])
def test_memory_tolerance(base, head, verdict):
    c = gate_decision.compare_metric(schema.METRICS_BY_KEY["peak_allocated_bytes"], extra(peak_allocated_bytes=base),
                            extra(peak_allocated_bytes=head), CFG)
    assert (c.method, c.verdict) == ("tolerance", verdict)


def test_host_rss_growth_is_reported_not_gated():
    # an xdist worker held 340 MiB more host memory than a plain run of the same case (H200)
    c = gate_decision.compare_metric(schema.METRICS_BY_KEY["peak_rss_bytes"], extra(peak_rss_bytes=1.8 * GIB),
                            extra(peak_rss_bytes=1.8 * GIB + 340 * MIB), CFG)
    assert c.verdict == WARN and "not gated" in c.reason


def test_memory_tolerance_config():
    cfg = gate_config.load_gate_config(None, ["peak_allocated_bytes=10"], [], False)
    c = gate_decision.compare_metric(schema.METRICS_BY_KEY["peak_allocated_bytes"], extra(peak_allocated_bytes=100 * GIB),
                            extra(peak_allocated_bytes=105 * GIB), cfg)
    assert c.verdict == PASS


def paper_extra(**scalars) -> dict:
    e = {"source": "paper", **{k: None for k in schema.REQUIRED_KEYS}}
    e.pop("samples")
    e.update(scalars)
    return e


@pytest.mark.parametrize(("head_tpot", "verdict"), [(10.3, PASS), (11.0, FAIL), (8.0, WARN)])
def test_threshold_only_against_summary_baseline(head_tpot, verdict):
    head = extra({"tpot_ms": normal(3, head_tpot, 0.01, 10)})
    c = gate_decision.compare_metric(schema.METRICS_BY_KEY["tpot_ms"], paper_extra(tpot_ms=10.0), head, CFG)
    assert c.method == "threshold-only" and c.p_value is None and c.mde_pct is None
    assert c.verdict == verdict


def test_tails_and_ratios_without_samples_warn_at_most_in_measured_runs():
    base = extra({"tpot_ms": [10.0, 10.1, 9.9]}, itl_ms_p95=10.0, ape_tpot=100.0)
    head = extra({"tpot_ms": [10.0, 10.1, 9.9]}, itl_ms_p95=30.0, ape_tpot=50.0)
    result = gate_decision.compare_benchmark(bench(extra_info=base), bench(extra_info=head), CFG)
    by = {m.metric: m for m in result.metrics}
    assert by["itl_ms_p95"].method == "summary" and by["itl_ms_p95"].verdict == WARN
    assert by["ape_tpot"].verdict == WARN
    assert result.verdict == WARN


def test_metric_on_one_side_only_is_skipped_and_null_on_both_is_left_out():
    base = extra({"tpot_ms": [10.0, 10.1, 9.9, 10.0]}, energy_j=5.0)
    head = extra({"tpot_ms": [10.0, 10.1, 9.9, 10.0]})
    result = gate_decision.compare_benchmark(bench(extra_info=base), bench(extra_info=head), CFG)
    by = {m.metric: m for m in result.metrics}
    assert by["energy_j"].verdict == SKIPPED
    assert "ttft_ms" not in by
    assert result.verdict == PASS


# -- allowlist, throttling -------------------------------------------------------------

def slow_pair(throttled: int = 0, memory_growth: int = 0):
    base = extra({"tpot_ms": normal(1, 10.0, 0.01, 10)}, peak_allocated_bytes=10 * GIB)
    head = extra({"tpot_ms": normal(2, 12.0, 0.01, 10)}, peak_allocated_bytes=10 * GIB + memory_growth)
    if throttled:
        head["throttled_rounds"] = throttled
    return bench(extra_info=base), bench(extra_info=head)


@pytest.mark.parametrize(("spec", "verdict"), [
    ("tpot_ms", WARN), ("tpot_ms@test_generate*", WARN), ("tpot_ms@*deployment.py::test_gen*", WARN),
    ("tpot_ms@other*", FAIL), ("ttft_ms", FAIL)])
def test_allowlist(spec, verdict):
    cfg = gate_config.load_gate_config(None, [], [spec], False)
    result = gate_decision.compare_benchmark(*slow_pair(), cfg)
    assert result.verdict == verdict
    if verdict == WARN:
        assert result.metrics[0].reason.startswith("allowlisted")


def test_throttling_turns_fail_into_inconclusive_but_not_memory():
    result = gate_decision.compare_benchmark(*slow_pair(throttled=3), CFG)
    tpot = next(m for m in result.metrics if m.metric == "tpot_ms")
    assert tpot.verdict == INCONCLUSIVE and tpot.reason.startswith("clock throttling in 3 rounds")
    assert result.verdict == INCONCLUSIVE
    # clocks do not change allocations: a memory regression still fails
    result = gate_decision.compare_benchmark(*slow_pair(throttled=3, memory_growth=GIB), CFG)
    assert result.verdict == FAIL
