"""How much the client (the load generator and the backend's HTTP/stream handling) costs, and
whether it kept up: per load point from the run itself (``client_cost``), and against a stub for
the benchmark (``measure_harness``, benchmarks/test_serving_harness.py).

Per point, against the real target (the in-process engine or a server over HTTP):
  client_cpu_ms_per_request = CPU time of the event loop thread(s) that sent and read the requests
                              (time.thread_time, so an in-process engine's own thread is not counted)
                              / requests of the point
  client_busy_fraction      = that CPU time / (the point's wall time x client processes)
  harness_overhead_fraction = client_cpu_ms_per_request / the point's median E2E
  client_loop_lag_ms_p50/p99 = how late the client's event loop woke a 10 ms timer during the point
                              (busy, or starved of CPU by other processes or an in-process engine's thread)
  client_lagged             = the loop was busy >= CLIENT_BUSY_LIMIT of the point, it woke more than
                              CLIENT_LAG_LIMIT_MS late at p99, or open-loop sends fell more than that
                              behind schedule at p99 (harness_lateness_ms_p99, serving/metrics.py): every
                              stamp then holds the client's own delay, and the point is marked, never
                              read as the server's latency
"""

from __future__ import annotations

import asyncio
import time

from pytest_moeperf.metrics.stats import percentile
from .load_point import LoadPoint
from .loadgen import run_load
from .stub import StubBackend
from .workload import synthetic_workload

CLIENT_BUSY_LIMIT = 0.9  # share of the point's wall time the client's event loop was on the CPU
CLIENT_LAG_LIMIT_MS = 5.0  # open-loop sends, or the loop's timer wake-ups, later than this at p99


def client_cost(run, e2e_ms_p50: float | None, lateness_ms_p99: float | None) -> dict:
    """The client's own cost at this point, measured during the point (module docstring)."""
    c = run.client or {}
    n = len(run.records)
    cpu_s, wall_s, workers = c.get("cpu_s"), c.get("wall_s"), c.get("workers", 1)
    per_req = cpu_s * 1e3 / n if cpu_s is not None and n else None
    busy = cpu_s / (wall_s * workers) if cpu_s is not None and wall_s else None
    lags = [lag * 1e3 for lag in c.get("loop_lag_s") or ()]
    loop_p99 = percentile(lags, 99) if lags else None
    why = []
    if busy is not None and busy >= CLIENT_BUSY_LIMIT:
        why.append(f"its event loop was on the CPU {busy:.0%} of the point")
    if loop_p99 is not None and loop_p99 > CLIENT_LAG_LIMIT_MS:
        why.append(f"its event loop woke {loop_p99:.3g} ms late at p99")
    if lateness_ms_p99 is not None and lateness_ms_p99 > CLIENT_LAG_LIMIT_MS:
        why.append(f"sends fell {lateness_ms_p99:.3g} ms behind schedule at p99")
    return {"client_cpu_ms_per_request": per_req, "client_busy_fraction": busy, "client_workers": workers,
            "client_loop_lag_ms_p50": percentile(lags, 50) if lags else None, "client_loop_lag_ms_p99": loop_p99,
            "harness_overhead_fraction": per_req / e2e_ms_p50 if per_req is not None and e2e_ms_p50 else None,
            "client_lagged": bool(why), "client_lag_reason": "; ".join(why) or None}


def lag_line(point_id: str, info: dict) -> str | None:
    """The terminal's line for a point whose client lagged, else None."""
    if not info.get("client_lagged"):
        return None
    return (f"{point_id}: the client lagged ({info.get('client_lag_reason')}): its latencies include the "
            "client's own queue, not only the server's")


def measure_harness(point: LoadPoint, requests: int = 2000, output_tokens: int = 16) -> dict:
    """Sustained requests/s and the latency the harness adds (median and p99 E2E against a stub
    backend that answers at once, in process); open loop also the lateness of sends against the schedule."""
    reqs = synthetic_workload(requests, 8, output_tokens)
    t0 = time.perf_counter()
    run = asyncio.run(run_load(StubBackend(), reqs, point))
    wall = time.perf_counter() - t0  # includes the event loop's start and teardown (~0.1 s)
    return {"harness_wall_s": wall, **run_summary(run, point, requests, output_tokens)}


def run_summary(run, point: LoadPoint, requests: int, output_tokens: int) -> dict:
    """Speed figures of one run against a stub (in process or over HTTP)."""
    sends = sorted(r.sent_s for r in run.records)
    e2e = [(r.end_s - r.sent_s) * 1e3 for r in run.records]
    late = [(r.sent_s - r.scheduled_s) * 1e3 for r in run.records]
    c = run.client or {}
    return {"harness_point": point.label, "harness_requests": requests, "harness_output_tokens": output_tokens,
            # completed requests per second of the run (first send to last end)
            "harness_requests_per_s": requests / run.duration_s,
            "harness_send_rate_per_s": (len(sends) - 1) / (sends[-1] - sends[0]) if sends[-1] > sends[0] else None,
            "harness_added_latency_ms_p50": percentile(e2e, 50),
            "harness_added_latency_ms_p99": percentile(e2e, 99),
            "harness_lateness_ms_p50": percentile(late, 50) if not point.closed_loop else None,
            "harness_lateness_ms_p99": percentile(late, 99) if not point.closed_loop else None,
            "client_cpu_ms_per_request": c["cpu_s"] * 1e3 / requests if c.get("cpu_s") is not None else None,
            "client_workers": c.get("workers", 1),
            "harness_failed": sum(1 for r in run.records if not r.ok)}
