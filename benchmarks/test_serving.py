"""Serving benchmarks: one parametrized pytest benchmark per model x load point.

Each load point sends a seeded workload of exact post-template prompts to transformers'
continuous-batching engine, closed loop (--moeperf-concurrency users) or open loop
(--moeperf-rate requests/s), and writes the serving metrics (docs/serving.md) into extra_info,
with per-request samples for the gate. A sweep stops at saturation (--moeperf-sweep).
"""

import pytest


@pytest.mark.moeperf
def test_serving(moeperf_serving_point, moeperf_serve):
    moeperf_serve(moeperf_serving_point)
