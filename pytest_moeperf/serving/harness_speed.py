"""How much the harness itself costs: the load generator against a stub backend that answers at
once, so every millisecond a record shows is the harness's (asyncio scheduling, stamping, records).
Used by benchmarks/test_serving_harness.py and, per load point, to state the harness's overhead
as a fraction of the real engine's E2E."""

from __future__ import annotations

import asyncio
import time

from pytest_moeperf.metrics.stats import percentile
from .loadgen import LoadPoint, run_load
from .stub import StubBackend
from .workload import synthetic_workload


def measure_harness(point: LoadPoint, requests: int = 2000, output_tokens: int = 16) -> dict:
    """Sustained requests/s and the latency the harness adds (median and p99 E2E against a stub
    that answers at once); open loop also the lateness of sends against the schedule."""
    reqs = synthetic_workload(requests, 8, output_tokens)
    t0 = time.perf_counter()
    run = asyncio.run(run_load(StubBackend(), reqs, point))
    wall = time.perf_counter() - t0  # includes the event loop's start and teardown (~0.1 s)
    sends = sorted(r.sent_s for r in run.records)
    e2e = [(r.end_s - r.sent_s) * 1e3 for r in run.records]
    late = [(r.sent_s - r.scheduled_s) * 1e3 for r in run.records]
    return {"harness_point": point.label, "harness_requests": requests, "harness_output_tokens": output_tokens,
            # completed requests per second of the run (first send to last end)
            "harness_requests_per_s": requests / run.duration_s, "harness_wall_s": wall,
            "harness_send_rate_per_s": (len(sends) - 1) / (sends[-1] - sends[0]) if sends[-1] > sends[0] else None,
            "harness_added_latency_ms_p50": percentile(e2e, 50),
            "harness_added_latency_ms_p99": percentile(e2e, 99),
            "harness_lateness_ms_p50": percentile(late, 50) if not point.closed_loop else None,
            "harness_failed": sum(1 for r in run.records if not r.ok)}
