"""Hooks pytest-moeperf calls; implement them in a conftest.py or a plugin."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_moeperf_modify_cases(config, cases):
    """Change the benchmark matrix in place before it is parametrized.

    Example: drop fp32 for the dense models in a conftest.py::

        def pytest_moeperf_modify_cases(config, cases):
            cases[:] = [c for c in cases if not (c.dtype == "fp32" and c.model != "gpt-oss-20b")]
    """


@hookspec
def pytest_moeperf_case_finished(config, case, extra_info):
    """Called after each case is measured and appended to the results log. ``case`` is a Case, or a
    serving load point's ServingPoint (benchmarks/test_serving.py); both have ``case_id`` and ``model``.

    Example: push the headline numbers to a dashboard::

        def pytest_moeperf_case_finished(config, case, extra_info):
            send_metric(f"{case.case_id}.tpot_ms", extra_info["tpot_ms"])
    """


@hookspec
def pytest_moeperf_case_failed(config, case, error):
    """Called when a case could not be measured (CUDA OOM, compile failure, ...); ``case`` as in
    pytest_moeperf_case_finished (a serving load point that failed included).

    Example: keep a list of failures for a nightly e-mail::

        FAILED = []
        def pytest_moeperf_case_failed(config, case, error):
            FAILED.append((case.case_id, error))
    """
