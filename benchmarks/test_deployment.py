"""Deployment benchmarks: one parametrized pytest benchmark per case of the matrix.

Each case runs ``generate`` rounds through ``benchmark.pedantic`` (so pytest-benchmark's
stats are the round times) and writes every deployment metric into ``extra_info``. The
matrix comes from the --gpu/--moeperf-* options; see README.md and docs/metrics.md.
"""

import pytest


@pytest.mark.moeperf
def test_generate(moeperf_case, moeperf_measure):
    moeperf_measure(moeperf_case)
