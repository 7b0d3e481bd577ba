"""The gate's decision rule against run-to-run drift: drift measured from stored runs, assumed between machines,
and changes clearly beyond the detectable effect."""

from __future__ import annotations

import pytest

from pytest_moeperf.gate import baseline as gate_baseline
from pytest_moeperf.gate import config as gate_config
from pytest_moeperf.gate import decision as gate_decision
from pytest_moeperf.gate import gate_run
from pytest_moeperf.gate import statistics as gate_stats
from pytest_moeperf.metrics import schema
from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, PASS, SKIPPED, WARN
from pytest_moeperf.gate.config import GateConfig
from pytest_moeperf.gate.gate_render import render_text

from test_gate import CFG, GIB, bench, cmp_samples, doc, extra, normal, slow_pair


# -- run-to-run drift from stored baseline runs, and changes clearly beyond the MDE ---------

def _run_doc(tpot: list[float]) -> dict:
    return {"machine_info": {}, "benchmarks": [bench(extra_info=extra({"tpot_ms": tpot}))]}


def test_drift_of_stored_runs_widens_the_detectable_effect():
    # three stored runs whose medians drift by ~6% (as two static runs did on the H200),
    # each tight within itself: a head 8% slower than the newest is within that drift
    runs = [_run_doc(normal(s, m, 0.01, 12)) for s, m in ((1, 10.0), (2, 10.6), (3, 10.0))]
    head = _run_doc(normal(9, 10.8, 0.01, 12))
    single = gate_run.compare_documents(runs[-1:], head, CFG).benchmarks[0]
    multi = gate_run.compare_documents(runs, head, CFG).benchmarks[0]
    m_single = next(m for m in single.metrics if m.metric == "tpot_ms")
    m_multi = next(m for m in multi.metrics if m.metric == "tpot_ms")
    assert m_single.verdict == INCONCLUSIVE and m_single.drift_pct == 3.5  # the assumed one
    assert m_multi.baseline_runs == 3 and m_multi.drift_pct > 3
    # the measured drift (pooled with the prior) keeps the detectable effect above threshold
    assert m_multi.mde_pct > 7 and m_multi.verdict in (WARN, INCONCLUSIVE)


def test_drift_pct_needs_two_runs():
    assert gate_stats.drift_pct([10.0]) is None
    assert gate_stats.drift_pct([10.0, 10.0]) == 0.0
    assert abs(gate_stats.drift_pct([9.0, 11.0]) - 100 * (2 ** 0.5) / 10) < 1e-9


def test_change_clearly_beyond_threshold_plus_mde_fails_despite_wide_spread():
    # host-bound eager decode: CV ~8%, 15 rounds -> MDE ~10% > 7%; a 40% slowdown is still a FAIL
    base = normal(1, 40.0, 0.08, 15)
    head = normal(2, 56.0, 0.08, 15)
    c = cmp_samples("tpot_ms", base, head)
    assert c.mde_pct > c.threshold_pct
    assert c.verdict == FAIL and "beyond threshold + detectable effect" in c.reason


def test_cross_machine_drift_is_at_least_the_rounds_spread():
    # host-bound eager decode, CV ~12%: its median moved by up to 36% between two H200 machines
    base, head = normal(1, 40.0, 0.12, 15), normal(2, 52.0, 0.12, 15)
    c = gate_decision.compare_metric(schema.METRICS_BY_KEY["tpot_ms"], extra({"tpot_ms": base}), extra({"tpot_ms": head}),
                            CFG, cross_machine=True)
    assert c.drift_pct > 6.0 and c.verdict == INCONCLUSIVE and "between machines" in c.reason


def _doc_on(uuid: str, tpot: list[float]) -> dict:
    return {"machine_info": {"gpu": {"name": "NVIDIA H200", "uuid": uuid}},
            "benchmarks": [bench(extra_info=extra({"tpot_ms": tpot}))]}


def test_baseline_from_another_gpu_assumes_drift_between_machines():
    # a tight run 9% slower than a tight single-run baseline: on the same GPU a FAIL; from
    # another GPU (UUID differs) within the drift measured between H200 machines: INCONCLUSIVE
    base = normal(1, 40.0, 0.01, 12)
    head = normal(2, 43.6, 0.01, 12)
    quiet = GateConfig(single_run_drift_pct={k: 0.0 for k in gate_config.DEFAULT_SINGLE_RUN_DRIFT_PCT})
    same = gate_run.compare_documents([_doc_on("GPU-a", base)], _doc_on("GPU-a", head), quiet).benchmarks[0]
    other = gate_run.compare_documents([_doc_on("GPU-a", base)], _doc_on("GPU-b", head), quiet).benchmarks[0]
    tp_same = next(m for m in same.metrics if m.metric == "tpot_ms")
    tp_other = next(m for m in other.metrics if m.metric == "tpot_ms")
    assert tp_same.verdict == FAIL and tp_same.drift_pct is None
    assert tp_other.verdict == INCONCLUSIVE and tp_other.drift_pct == 6.0
    assert "between machines" in tp_other.reason
    # a regression far beyond threshold + that detectable effect still FAILs across machines
    far = gate_run.compare_documents([_doc_on("GPU-a", base)], _doc_on("GPU-b", normal(3, 60.0, 0.01, 12)), quiet)
    assert next(m for m in far.benchmarks[0].metrics if m.metric == "tpot_ms").verdict == FAIL


def test_is_cross_machine_needs_both_uuids():
    assert not gate_baseline.is_cross_machine([{"machine_info": {}}], _doc_on("GPU-b", [1.0]))
    assert not gate_baseline.is_cross_machine([_doc_on("GPU-a", [1.0])], {"machine_info": {}})
    assert gate_baseline.is_cross_machine([_doc_on("GPU-a", [1.0])], _doc_on("GPU-b", [1.0]))


def test_cross_machine_is_decided_per_benchmark_when_cases_name_their_gpu():
    b = bench(extra_info={**extra({"tpot_ms": [1.0, 1.0]}), "gpu_uuid": "GPU-a"})
    h_same = bench(extra_info={**extra({"tpot_ms": [1.0, 1.0]}), "gpu_uuid": "GPU-a"})
    h_other = bench(extra_info={**extra({"tpot_ms": [1.0, 1.0]}), "gpu_uuid": "GPU-b"})
    assert gate_baseline.bench_cross_machine(b, h_same, doc_level=True) is False
    assert gate_baseline.bench_cross_machine(b, h_other, doc_level=False) is True
    assert gate_baseline.bench_cross_machine(bench(), h_other, doc_level=True) is True  # falls back to the documents


def test_agreeing_stored_runs_do_not_remove_the_drift_between_machines():
    # two stored runs on GPU-a agree to 0.2%; a tight run on GPU-b 9% slower stays INCONCLUSIVE
    runs = [_doc_on("GPU-a", normal(s, m, 0.01, 10)) for s, m in ((1, 10.0), (2, 10.02))]
    head = _doc_on("GPU-b", normal(3, 10.9, 0.01, 10))
    tp = next(m for m in gate_run.compare_documents(runs, head, CFG).benchmarks[0].metrics if m.metric == "tpot_ms")
    assert tp.verdict == INCONCLUSIVE and tp.drift_pct == 6.0


def test_pooled_runs_take_measured_scalars_as_the_median_and_memory_from_the_newest():
    # ape_tpot has no samples: one run's value would be that run's drift, so several runs give
    # their median; memory is deterministic and stays the newest run's (the code compared)
    runs = [bench(extra_info=extra({"tpot_ms": [10.0, 10.1]}, ape_tpot=v, peak_allocated_bytes=p))
            for v, p in ((30.0, 1 * GIB), (20.0, 2 * GIB), (29.0, 3 * GIB))]
    pooled = gate_baseline.pool_runs(runs)["extra_info"]
    assert pooled["ape_tpot"] == 29.0
    assert pooled["peak_allocated_bytes"] == 3 * GIB
    assert pooled["samples"]["tpot_ms"] == [10.0, 10.1] * 3
    # a run without the figure is left out of the median, not counted as zero
    runs[1]["extra_info"]["ape_tpot"] = None
    assert gate_baseline.pool_runs(runs)["extra_info"]["ape_tpot"] == 29.5


@pytest.mark.parametrize("bad", ["12.5", float("nan"), float("inf"), -5.0, True], ids=["string", "nan", "inf", "negative", "bool"])
def test_an_invalid_value_is_inconclusive_never_skipped_or_improved(bad):
    """Issue 27 item 10: a broken head value used to read as 'not measured' (SKIPPED, the benchmark PASSed)
    or, when negative, as an improvement of more than 100 %."""
    base = bench(extra_info=extra(tpot_ms=20.0, ttft_ms=50.0))
    head = bench(extra_info=extra(tpot_ms=bad, ttft_ms=50.0))
    result = gate_decision.compare_benchmark(base, head, CFG)
    tpot = next(m for m in result.metrics if m.metric == "tpot_ms")
    assert tpot.verdict == INCONCLUSIVE and tpot.reason.startswith("invalid in this run: tpot_ms "), tpot
    assert result.verdict == INCONCLUSIVE
    # the same value in the baseline names the baseline
    swapped = gate_decision.compare_benchmark(head, base, CFG)
    assert next(m for m in swapped.metrics if m.metric == "tpot_ms").reason.startswith("invalid in the baseline")
    # absent or null is "not measured", as before
    none = gate_decision.compare_benchmark(base, bench(extra_info=extra(tpot_ms=None, ttft_ms=50.0)), CFG)
    assert next(m for m in none.metrics if m.metric == "tpot_ms").verdict == SKIPPED


def test_the_terminal_shows_one_short_line_per_fail_or_inconclusive_and_counts_the_rest():
    """Issue 28: reasons ran to 459 characters and every metric of every benchmark was printed; now one
    line of at most 120 characters per FAIL/INCONCLUSIVE metric, one line counting the rest, every row
    with -v (the whole reason stays in the JSON and markdown)."""
    from pytest_moeperf.gate.gate_render import LINE_MAX

    base, head = slow_pair()
    long_name = "test_generate[" + "x" * 150 + "]"
    result = gate_run.compare_documents([doc(base, bench(long_name, base["extra_info"]))],
                                        doc(head, bench(long_name, head["extra_info"])), CFG)
    bad = [(b, m) for b in result.benchmarks for m in b.metrics if m.verdict in (FAIL, INCONCLUSIVE)]
    rest = [m for b in result.benchmarks for m in b.metrics if m.verdict in (PASS, WARN)]
    assert bad and rest
    lines = render_text(result).splitlines()
    verdict_lines = [ln for ln in lines if ln.startswith((FAIL + " ", INCONCLUSIVE + " "))]
    assert len(verdict_lines) == len(bad)
    assert all(len(ln) <= LINE_MAX for ln in verdict_lines), max(map(len, verdict_lines))
    counts = [ln for ln in lines if ln.startswith("other metrics: ")]
    assert len(counts) == 1 and f"{sum(m.verdict == PASS for m in rest)} PASS" in counts[0]
    assert not any(m.reason in "\n".join(lines) for _, m in bad if len(m.reason) > 60)  # long reasons: -v / JSON
    verbose = render_text(result, verbose=True)
    assert all(m.reason in verbose for b in result.benchmarks for m in b.metrics)
    assert all(m["reason"] for bj in result.to_json()["benchmarks"] for m in bj["metrics"])
