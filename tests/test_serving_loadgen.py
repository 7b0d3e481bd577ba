"""The serving harness's pure parts: load generator (on a virtual clock), workloads, metrics,
SLOs, the saturation rule and option parsing. No model, no wall-clock waits."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.serving.loadgen import LoadPoint, VirtualClock, arrival_times, run_load
from pytest_moeperf.serving.metrics import load_point_metrics, request_latencies, steady_window
from pytest_moeperf.serving.slo import MLPERF_SLOS, Slo, parse_slo
from pytest_moeperf.serving.stub import StubBackend
from pytest_moeperf.serving.sweep import SweepPoint, knee, saturation_index
from pytest_moeperf.serving.workload import LengthSpec, WorkloadSpec, parse_length, synthetic_workload

TTFT, TPOT = 0.1, 0.01


def _run(point, n=20, out=5, fail=frozenset(), timeout=None, ttft=TTFT, tpot=TPOT):
    clock = VirtualClock()
    backend = StubBackend(clock, ttft_s=ttft, tpot_s=tpot, fail_ids=fail, engine_stamps=True)
    reqs = synthetic_workload(n, 8, out)
    return clock.run(run_load(backend, reqs, point, clock=clock, seed=3, timeout_s=timeout))


# --- load generator ------------------------------------------------------------------------------

def test_closed_loop_keeps_exactly_c_users_busy():
    run = _run(LoadPoint("concurrency", 4), n=20)
    recs = run.records
    assert len(recs) == 20 and all(r.ok for r in recs)
    e2e = TTFT + 4 * TPOT
    # 20 requests, 4 users, each request exactly e2e long on the virtual clock: 5 waves
    assert run.duration_s == pytest.approx(5 * e2e)
    for r in recs:
        assert r.first_token_s - r.sent_s == pytest.approx(TTFT)
        assert r.end_s - r.sent_s == pytest.approx(e2e)
        assert r.output_tokens == 5 and r.chunk_tokens == (1,) * 5
    assert {r.user for r in recs} == {0, 1, 2, 3}
    # a user sends its next request the moment its last one ends
    by_user = {}
    for r in sorted(recs, key=lambda r: r.sent_s):
        if r.user in by_user:
            assert r.sent_s == pytest.approx(by_user[r.user])
        by_user[r.user] = r.end_s


def test_open_loop_follows_the_seeded_schedule():
    point = LoadPoint("poisson", 5.0)
    run = _run(point, n=30)
    due = arrival_times(point, 30, seed=3)
    assert [r.scheduled_s for r in run.records] == pytest.approx(due)
    assert [r.sent_s for r in run.records] == pytest.approx(due)  # the virtual clock is never late
    assert all(r.user is None for r in run.records)


def test_failures_are_records_never_dropped():
    run = _run(LoadPoint("concurrency", 2), n=6, fail={"r1", "r4"})
    assert len(run.records) == 6
    bad = [r for r in run.records if not r.ok]
    assert [r.request_id for r in bad] == ["r1", "r4"]
    assert "refused" in bad[0].error and bad[0].output_tokens == 0
    m = load_point_metrics(run.records, run.duration_s, [], MLPERF_SLOS["mlperf-llama2-70b"])
    assert m["failed_requests"] == 2 and m["requests_ok"] == 4
    assert m["slo_attainment"] == pytest.approx(4 / 6)  # failed requests count as missed


def test_time_limit_records_the_unfinished():
    run = _run(LoadPoint("concurrency", 1), n=10, timeout=0.5)  # each request takes 0.14 s
    assert len(run.records) == 10
    done = [r for r in run.records if r.ok]
    assert len(done) == 3
    assert all("time limit" in r.error for r in run.records if not r.ok)


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.05, 500), n=st.integers(1, 200), seed=st.integers(0, 10**6),
       mode=st.sampled_from(["poisson", "constant"]))
def test_arrivals_start_at_zero_increase_and_are_seeded(rate, n, seed, mode):
    p = LoadPoint(mode, rate)
    t = arrival_times(p, n, seed)
    assert len(t) == n and t[0] == 0.0 and all(b >= a for a, b in zip(t, t[1:]))
    assert t == arrival_times(p, n, seed)
    if mode == "constant":
        assert t[-1] == pytest.approx((n - 1) / rate)


def test_poisson_mean_gap_is_one_over_rate():
    t = arrival_times(LoadPoint("poisson", 4.0), 4001, seed=1)
    assert t[-1] / 4000 == pytest.approx(0.25, rel=0.05)


@pytest.mark.parametrize("mode,value", [("concurrency", 0), ("concurrency", -1), ("concurrency", 1.5),
                                        ("poisson", 0.0), ("poisson", float("nan")), ("constant", float("inf")),
                                        ("sideways", 1)])
def test_bad_load_points_say_why(mode, value):
    with pytest.raises(ValueError) as e:
        LoadPoint(mode, value)
    assert "\n" not in str(e.value)


def test_records_are_json_lines(tmp_path):
    run = _run(LoadPoint("concurrency", 2), n=4)
    path = tmp_path / "rec.jsonl"
    run.write_jsonl(str(path), extra={"point_id": "x"})
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["point_id"] == "x" and rows[0]["point"] == "cc2"
    assert {"scheduled_s", "sent_s", "first_token_s", "chunk_times_s", "end_s", "input_tokens", "output_tokens",
            "error", "engine_times_s"} <= set(rows[0])


# --- metrics -------------------------------------------------------------------------------------

def test_metrics_match_the_known_timing():
    run = _run(LoadPoint("concurrency", 4), n=20, out=11)
    m = load_point_metrics(run.records, run.duration_s, list(MLPERF_SLOS.values()), parse_slo("ttft_ms=150,tpot_ms=20"))
    e2e = TTFT + 10 * TPOT
    assert m["req_ttft_ms_p50"] == pytest.approx(100) and m["req_ttft_ms_p99"] == pytest.approx(100)
    assert m["req_tpot_ms_p50"] == pytest.approx(10) and m["req_itl_ms_p90"] == pytest.approx(10)
    assert m["req_e2e_ms_p50"] == pytest.approx(e2e * 1e3) and m["req_e2e_ms_n"] == 20
    assert m["request_throughput_per_s"] == pytest.approx(20 / (5 * e2e))
    assert m["output_tokens_per_s"] == pytest.approx(220 / (5 * e2e))
    assert m["output_tokens_per_s_per_user"] == pytest.approx(100)
    assert m["slo_attainment"] == 1.0 and m["goodput_req_per_s"] == pytest.approx(m["request_throughput_per_s"])
    # 450/40 is met, deepseek-r1-interactive's 15 ms TPOT too; its 1500 ms TTFT as well
    assert m["slo_by_name"]["mlperf-llama2-70b-interactive"]["attainment"] == 1.0
    assert m["steady_window_s"] == pytest.approx([e2e, 4 * e2e])
    assert m["mean_in_flight"] == pytest.approx(4.0)
    assert m["clock_delivery_ms_p50"] == pytest.approx(0.0, abs=1e-9)  # stub stamps on the harness clock
    assert len(m["samples"]["req_ttft_ms"]) == 20


def test_slo_misses_count_against_goodput():
    run = _run(LoadPoint("concurrency", 1), n=5, ttft=0.6)
    m = load_point_metrics(run.records, run.duration_s, [], MLPERF_SLOS["mlperf-llama2-70b-interactive"])
    assert m["slo_attainment"] == 0.0 and m["goodput_req_per_s"] == 0.0
    assert m["slo_by_name"]["mlperf-llama2-70b-interactive"]["ttft_ms"] == 450


def test_tpot_undefined_for_one_token():
    run = _run(LoadPoint("concurrency", 1), n=2, out=1)
    lat = request_latencies(run.records[0])
    assert lat["tpot_ms"] is None and lat["ttft_ms"] == pytest.approx(100)


def test_no_steady_window_with_one_request():
    run = _run(LoadPoint("concurrency", 1), n=1)
    assert steady_window(run.records) is None


# --- SLOs, workloads ---------------------------------------------------------------------------------

def test_slo_parsing():
    s = parse_slo("ttft_ms=500,tpot_ms=30")
    assert (s.ttft_ms, s.tpot_ms, s.e2e_ms) == (500, 30, None)
    assert parse_slo("mlperf-deepseek-r1-interactive").tpot_ms == 15
    assert Slo("x", ttft_ms=10).meets(9, None, None) and not Slo("x", ttft_ms=10).meets(None, 1, 1)


@pytest.mark.parametrize("bad,msg", [("ttfb_ms=5", "unknown SLO metric 'ttfb_ms'"), ("ttft_ms=fast", "not a number"),
                                     ("ttft_ms=-1", "> 0"), ("mlperf-gpt5", "unknown SLO")])
def test_bad_slo_is_one_line(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        parse_slo(bad)
    assert "\n" not in str(e.value)


def test_lengths():
    assert parse_length("64", "x") == LengthSpec("fixed", 64)
    assert parse_length("uniform:8-16", "x").max == 16
    spec = WorkloadSpec(50, parse_length("uniform:8-16", "x"), parse_length("normal:32,8", "x"), seed=4)
    lens = spec.lengths()
    assert lens == spec.lengths() and all(8 <= i <= 16 and 1 <= o <= 64 for i, o in lens)
    for bad in ("0", "uniform:9-3", "zipf:3", "normal:4,-1", "x"):
        with pytest.raises(ValueError):
            parse_length(bad, "--moeperf-serving-lengths")


# --- saturation --------------------------------------------------------------------------------------

def test_knee_where_throughput_stops_growing_while_ttft_climbs():
    pts = [SweepPoint(1, 100, 50), SweepPoint(2, 190, 52), SweepPoint(4, 360, 60), SweepPoint(8, 370, 140),
           SweepPoint(16, 365, 400)]
    assert saturation_index(pts) == 3 and knee(pts).load == 4


def test_no_knee_while_throughput_grows_or_ttft_is_flat():
    assert knee([SweepPoint(1, 100, 50), SweepPoint(2, 200, 200)]) is None  # grew: not saturated
    assert knee([SweepPoint(1, 100, 50), SweepPoint(2, 101, 51)]) is None  # flat TTFT: not saturated
    assert saturation_index([SweepPoint(1, 100, 50), SweepPoint(2, None, None)]) == 1  # a failed point


# --- the harness is cheap (a smoke check of the speed benchmark's path; the figure is a benchmark) ---

def test_stub_answers_at_once_on_the_real_clock():
    reqs = synthetic_workload(200, 4, 4)
    run = asyncio.run(run_load(StubBackend(), reqs, LoadPoint("concurrency", 16)))
    assert len(run.records) == 200 and all(r.ok and r.output_tokens == 4 for r in run.records)
    assert all(math.isfinite(r.end_s) for r in run.records)


# --- prefill vs decode energy (single-request benchmark) ----------------------------------------------

def test_energy_split_recovers_known_prefill_and_decode():
    from pytest_moeperf.measure.energy_split import split_from_windows

    prefill, per_token, n, batch = 30.0, 2.0, 65, 2
    one = [batch * (prefill + per_token) + d for d in (-0.5, 0.0, 0.5)]  # a 1-token round: prefill + token 1
    full = [batch * (prefill + n * per_token) + d for d in (-1.0, 0.0, 1.0)]
    s = split_from_windows(one, full, n, batch)
    assert s["prefill_j_per_request"] == pytest.approx(prefill + per_token)  # the first token rides with prefill
    assert s["decode_j_per_token"] == pytest.approx(per_token)
    lo, hi = s["decode_j_per_token_ci95"]
    assert lo < per_token < hi and s["decode_j_per_token_cv"] > 0 and s["prefill_windows"] == 3
    assert "unavailable" in split_from_windows([], full, n, batch)


# --- steady-state energy from a counter trace --------------------------------------------------------

def test_window_energy_interpolates_the_counter():
    from pytest_moeperf.serving.energy_trace import counter_at, window_energy

    trace = [(float(t), 300.0 * t) for t in range(0, 11)]  # a 300 W board sampled every second
    assert counter_at(trace, 2.5) == pytest.approx(750.0)
    assert counter_at(trace, 11.0) is None
    e = window_energy(trace, 2.5, 8.5, tokens=600)
    assert e["steady_energy_j"] == pytest.approx(1800.0) and e["avg_power_w"] == pytest.approx(300.0)
    assert e["j_per_output_token"] == pytest.approx(3.0)
    assert "5 s" in window_energy(trace, 1.0, 4.0, tokens=10)["energy_unavailable"]


def test_energy_trace_samples_a_meter_in_a_thread():
    import itertools
    import types

    from pytest_moeperf.serving.energy_trace import EnergyTrace

    counter = itertools.count(0, 100)  # mJ, rising by 100 per read
    meter = types.SimpleNamespace(device=types.SimpleNamespace(energy_mj=lambda: next(counter)))
    with EnergyTrace(meter, interval_s=0.001) as trace:
        pass
    times = [t for t, _ in trace.samples]
    assert len(trace.samples) >= 2 and times == sorted(times)
    assert [e for _, e in trace.samples] == sorted(e for _, e in trace.samples)
