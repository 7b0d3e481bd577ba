"""Serving-side energy and the client's own cost: prefill vs decode energy, steady-state energy from a counter
trace, the client's CPU and lag per point."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moeperf.serving.load_point import LoadPoint
from pytest_moeperf.serving.loadgen import run_load
from pytest_moeperf.serving.stub import StubBackend
from pytest_moeperf.serving.workload import synthetic_workload


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
    from pytest_moeperf.device.energy import counter_at, window_energy

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

    from pytest_moeperf.device.energy import EnergyTrace

    counter = itertools.count(0, 100)  # mJ, rising by 100 per read
    meter = types.SimpleNamespace(device=types.SimpleNamespace(energy_mj=lambda: next(counter)))
    with EnergyTrace(meter, interval_s=0.001) as trace:
        pass
    times = [t for t, _ in trace.samples]
    assert len(trace.samples) >= 2 and times == sorted(times)
    assert [e for _, e in trace.samples] == sorted(e for _, e in trace.samples)


# --- the client's own cost per point (harness_speed.client_cost) ----------------------------------

def test_run_load_measures_the_client_loop_cpu_and_wall():
    run = asyncio.run(run_load(StubBackend(), synthetic_workload(50, 8, 4), LoadPoint("concurrency", 4)))
    assert run.client["workers"] == 1 and run.client["wall_s"] > 0 and all(x >= 0 for x in run.client["loop_lag_s"])
    assert 0 <= run.client["cpu_s"] <= run.client["wall_s"] * 1.5  # thread CPU of this loop, not the machine's


def _fake_run(n, cpu_s, wall_s, workers=1, lags=()):
    from types import SimpleNamespace

    return SimpleNamespace(records=[None] * n, client={"cpu_s": cpu_s, "wall_s": wall_s, "workers": workers,
                                                       "loop_lag_s": list(lags)})


@given(st.integers(1, 10_000), st.floats(0, 100), st.floats(0.01, 100), st.integers(1, 8),
       st.none() | st.floats(0.1, 1e4), st.none() | st.floats(0, 1e3), st.lists(st.floats(0, 0.1), max_size=50))
def test_client_cost_is_measured_against_the_point_and_marks_lag(n, cpu_s, wall_s, workers, e2e, late, lags):
    from pytest_moeperf.metrics.stats import percentile
    from pytest_moeperf.serving.harness_speed import CLIENT_BUSY_LIMIT, CLIENT_LAG_LIMIT_MS, client_cost, lag_line

    out = client_cost(_fake_run(n, cpu_s, wall_s, workers, lags), e2e, late)
    loop_p99 = percentile([x * 1e3 for x in lags], 99) if lags else None
    assert out["client_loop_lag_ms_p99"] == (pytest.approx(loop_p99) if lags else None)
    assert out["client_cpu_ms_per_request"] == pytest.approx(cpu_s * 1e3 / n)
    busy = cpu_s / (wall_s * workers)
    assert out["client_busy_fraction"] == pytest.approx(busy)
    assert out["harness_overhead_fraction"] == (pytest.approx(cpu_s * 1e3 / n / e2e) if e2e else None)
    lagged = (busy >= CLIENT_BUSY_LIMIT or (late is not None and late > CLIENT_LAG_LIMIT_MS)
              or (loop_p99 is not None and loop_p99 > CLIENT_LAG_LIMIT_MS))
    assert out["client_lagged"] == lagged
    line = lag_line("p-cc4", out)
    assert (line is not None) == lagged
    if lagged:
        assert line.startswith("p-cc4: the client lagged (") and "\n" not in line


def test_a_lagging_client_is_one_line_in_the_serving_summary():
    from types import SimpleNamespace

    from pytest_moeperf.serving.harness_speed import client_cost
    from pytest_moeperf.serving.summary import render_serving_summary

    info = {"request_throughput_per_s": 1.0, **client_cost(_fake_run(10, 1.0, 10.0), 5.0, 40.0)}
    ok = {"request_throughput_per_s": 1.0, **client_cost(_fake_run(10, 1.0, 10.0), 5.0, 0.5)}
    text = render_serving_summary([(SimpleNamespace(point_id="m-r1000"), info), (SimpleNamespace(point_id="m-r10"), ok)],
                                  [], {})
    assert "m-r1000: the client lagged (sends fell 40 ms behind schedule at p99)" in text
    assert "m-r10: the client lagged" not in text


def test_a_client_loop_blocked_by_its_own_work_is_marked_lagged():
    """Real clock: a backend that holds the event loop 30 ms per request (as a slow parser would)."""
    import time as _time

    from pytest_moeperf.serving.harness_speed import client_cost

    class Blocking(StubBackend):
        async def stream(self, request):
            await asyncio.sleep(0)  # a real backend awaits its socket: other tasks run in between
            _time.sleep(0.03)
            async for item in super().stream(request):
                yield item

    run = asyncio.run(run_load(Blocking(), synthetic_workload(12, 8, 2), LoadPoint("concurrency", 1)))
    out = client_cost(run, 30.0, None)
    assert out["client_lagged"] and "its event loop woke" in out["client_lag_reason"], out
