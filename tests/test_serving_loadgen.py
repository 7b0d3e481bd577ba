"""The serving harness's pure parts: load generator (on a virtual clock), workloads, metrics,
SLOs, the saturation rule and option parsing. No model, no wall-clock waits."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.serving.load_point import LoadPoint
from pytest_moeperf.serving.loadgen import VirtualClock, arrival_times, run_load
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


class _TailBackend(StubBackend):
    """Chunks every TPOT, then the stream closes ``tail_s`` later (a usage chunk and [DONE] over HTTP)."""

    tail_s = 0.5

    async def stream(self, request):
        from pytest_moeperf.serving.backend import StreamEnd

        async for item in super().stream(request):
            if isinstance(item, StreamEnd):
                await self.clock.sleep(self.tail_s)
            yield item


def test_a_request_ends_at_its_last_content_chunk_not_at_the_stream_close():
    clock = VirtualClock()
    reqs = synthetic_workload(3, 8, 5)
    run = clock.run(run_load(_TailBackend(clock, ttft_s=TTFT, tpot_s=TPOT), reqs, LoadPoint("concurrency", 1),
                             clock=clock))
    for r in run.records:
        assert r.end_s == r.chunk_times_s[-1]
        assert r.end_s - r.sent_s == pytest.approx(TTFT + 4 * TPOT)  # E2E leaves the tail out
        assert r.info["stream_end_s"] - r.end_s == pytest.approx(_TailBackend.tail_s)
        assert request_latencies(r)["e2e_ms"] == pytest.approx((TTFT + 4 * TPOT) * 1e3)
    # the next user's request still waits for the stream's close (the connection is busy until then)
    assert run.records[1].sent_s == pytest.approx(run.records[0].info["stream_end_s"])


def test_time_limit_records_the_unfinished():
    run = _run(LoadPoint("concurrency", 1), n=10, timeout=0.5)  # each request takes 0.14 s
    assert len(run.records) == 10
    done = [r for r in run.records if r.ok]
    assert len(done) == 3
    assert all("time limit" in r.error for r in run.records if not r.ok)


def test_makespan_counts_requests_stopped_at_the_limit_and_never_sent():
    """Issue 27.5: one makespan rule for every outcome. At 1e-9 requests/s nothing arrives before a
    5 s limit: the makespan is the 5 s, not the instant of some early end, and no rate is inflated."""
    run = _run(LoadPoint("poisson", 1e-9), n=8, timeout=5.0)
    assert run.duration_s == pytest.approx(5.0) and not any(r.ok for r in run.records)
    m = load_point_metrics(run.records, run.duration_s, [], MLPERF_SLOS["mlperf-llama2-70b"])
    assert m["request_throughput_per_s"] == 0 and m["goodput_req_per_s"] == 0
    # closed loop cut at the limit: 3 finished by 0.42 s, the makespan is still the 0.5 s limit
    cut = _run(LoadPoint("concurrency", 1), n=10, timeout=0.5)
    assert cut.duration_s == pytest.approx(0.5)
    m = load_point_metrics(cut.records, cut.duration_s, [], MLPERF_SLOS["mlperf-llama2-70b"])
    assert m["request_throughput_per_s"] == pytest.approx(3 / 0.5)


def test_a_point_with_a_large_failed_share_is_a_failed_point():
    from pytest_moeperf.serving.metrics import MAX_FAILED_SHARE, point_failure

    slo = MLPERF_SLOS["mlperf-llama2-70b"]
    run = _run(LoadPoint("concurrency", 2), n=20, fail={"r1", "r4", "r7"})  # 15 % failed
    m = load_point_metrics(run.records, run.duration_s, [], slo)
    why = point_failure(m)
    assert why.startswith("3 of 20 requests failed") and "\n" not in why
    ok = _run(LoadPoint("concurrency", 2), n=20, fail={"r1"})  # 5 %: measured, the failure counted
    assert MAX_FAILED_SHARE == 0.10 and point_failure(load_point_metrics(ok.records, ok.duration_s, [], slo)) is None
    none = _run(LoadPoint("concurrency", 1), n=2, fail={"r0", "r1"})
    assert point_failure(load_point_metrics(none.records, none.duration_s, [], slo)).startswith("no request succeeded")


def test_cancelling_a_run_cancels_what_it_started():
    """Ctrl-C reaches run_load as a cancellation: every request it started is cancelled with it,
    so none outlives the run (the engine's requests are cancelled in each stream's finally)."""
    clock = VirtualClock()

    async def main():
        task = asyncio.ensure_future(run_load(StubBackend(clock, ttft_s=1.0), synthetic_workload(4, 8, 3),
                                              LoadPoint("concurrency", 4), clock=clock, timeout_s=100))
        await clock.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
                and not t.get_coro().__qualname__.endswith("drive")]  # the virtual clock's own driver

    assert clock.run(main()) == []


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.05, 500), n=st.integers(1, 200), seed=st.integers(0, 10**6),
       mode=st.sampled_from(["poisson", "constant"]))
def test_n_arrivals_span_n_over_rate_increase_and_are_seeded(rate, n, seed, mode):
    """Issue 28.5, vLLM's rule: the gaps are rescaled so the n-th arrival is at n/rate (the offered
    rate over the schedule is the asked one); the first arrival is one (scaled) gap after 0."""
    p = LoadPoint(mode, rate)
    t = arrival_times(p, n, seed)
    assert len(t) == n and t[0] > 0 and all(b >= a for a, b in zip(t, t[1:]))
    assert t[-1] == pytest.approx(n / rate) and t == arrival_times(p, n, seed)
    if mode == "constant":
        assert t == pytest.approx([(i + 1) / rate for i in range(n)])


def test_poisson_mean_gap_is_one_over_rate():
    t = arrival_times(LoadPoint("poisson", 4.0), 4001, seed=1)
    gaps = [b - a for a, b in zip([0.0] + t, t)]
    assert sum(gaps) / len(gaps) == pytest.approx(0.25)
    assert len({round(g, 9) for g in gaps}) > 3000  # still exponential gaps, not a constant rate


def test_open_loop_records_the_offered_rate():
    run = _run(LoadPoint("poisson", 4.0), n=20)
    assert run.offered_rate_per_s == pytest.approx(4.0)  # 20 sends, the last at 20/4 s
    assert _run(LoadPoint("concurrency", 2), n=4).offered_rate_per_s is None


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


def test_queue_wait_is_over_successful_requests_and_not_clipped():
    """Issue 28.6: a failed request's admission is left out (docs: successful requests only), and a
    wait below 0 (the engine's stamp before the harness's send: two clocks disagreeing) is kept."""
    from pytest_moeperf.serving.loadgen import RequestRecord

    def rec(rid, admitted, error=None):
        return RequestRecord(rid, 0, 8, 2, 0.0, 1.0, None if error else 1.1, () if error else (1.1, 1.2),
                             () if error else (1, 1), 1.2, 0 if error else 2, error=error,
                             info={"engine_admitted_s": admitted})

    records = [rec("a", 1.05), rec("b", 0.99), rec("c", 3.0, error="engine failed request c")]
    m = load_point_metrics(records, 1.2, [], MLPERF_SLOS["mlperf-llama2-70b"])
    assert m["req_queue_wait_ms_n"] == 2
    assert sorted(m["samples"]["req_queue_wait_ms"]) == pytest.approx([-10.0, 50.0])
    assert request_latencies(records[2])["queue_wait_ms"] is None
