"""The progress interface (pytest_moeperf.measure.progress) and its terminal-reporter implementation.

The lines of a real benchmark run are checked in test_plugin_e2e.py
(test_default_run_shows_progress_between_phases); here: the estimator with an injected clock,
the formats, and verbosity / capture handling through pytester with no model loaded.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moeperf.measure.progress import (NULL_PROGRESS, EtaEstimator, NullProgress, Progress, format_bytes,
                                     format_seconds)
from pytest_moeperf.plugin.progress_pytest import TerminalProgress


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_null_and_terminal_progress_implement_the_protocol():
    assert isinstance(NULL_PROGRESS, Progress)
    assert isinstance(NullProgress(), Progress)
    assert issubclass(TerminalProgress, NullProgress)
    # every Protocol method exists on the null implementation with the same keyword-only names
    import inspect

    for name, member in inspect.getmembers(Progress, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(NullProgress, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name


def test_eta_uses_the_same_key_first_then_all_points():
    clock = FakeClock()
    eta = EtaEstimator(clock=clock)
    assert eta.remaining(["a", "b"]) is None  # nothing to estimate from yet
    eta.start(1)
    clock.t += 30.0
    assert eta.finish(1, "static") == 30.0
    eta.start(2)
    clock.t += 10.0
    eta.finish(2, "eager")
    eta.record("eager", 20.0)
    assert eta.estimate("static") == 30.0
    assert eta.estimate("eager") == 15.0
    assert eta.estimate("unseen") == 20.0  # mean of all three
    assert eta.remaining(["static", "eager", "unseen"]) == 65.0
    assert eta.finish("never-started") is None
    assert eta.finished == 3


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "3"])
def test_eta_refuses_durations_that_are_not_seconds(bad):
    with pytest.raises(ValueError, match="finite number of seconds"):
        EtaEstimator().record("k", bad)


@given(st.dictionaries(st.sampled_from("abc"), st.lists(st.floats(0, 1e5), min_size=1, max_size=5), min_size=1),
       st.lists(st.sampled_from("abcd"), max_size=8))
def test_eta_remaining_is_the_sum_of_per_point_estimates(done, pending):
    eta = EtaEstimator()
    for key, durations in done.items():
        for d in durations:
            eta.record(key, d)
    every = [d for ds in done.values() for d in ds]
    expected = sum(sum(done[k]) / len(done[k]) if k in done else sum(every) / len(every) for k in pending)
    assert eta.remaining(pending) == pytest.approx(expected)
    assert eta.remaining(pending) >= 0


@pytest.mark.parametrize("n, text", [(None, "? bytes"), (12, "12 B"), (382_430, "382.43 kB"),
                                     (41_830_000_000, "41.83 GB"), (5_500_000, "5.50 MB")])
def test_format_bytes_is_decimal(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("s, text", [(0.4219, "0.42 s"), (12.34, "12.3 s"), (185, "3 min 05 s"),
                                     (3725, "1 h 02 min"), (None, "?"), (float("nan"), "?")])
def test_format_seconds(s, text):
    assert format_seconds(s) == text


# --- the terminal reporter: verbosity and capture (no model: the test calls the plugin's Progress) ----

CALLS = """
    def test_phases(request, capsys):
        p = request.config.pluginmanager.get_plugin("moeperf-progress")
        p.model_loading("m", dtype="bf16", device="cpu", weights="random")
        p.model_loaded("m", weights_bytes=2_500_000, load_s=1.5)
        p.priming("m-c64-n4", backend="static")
        p.primed("m-c64-n4", first_call_s=95.2, second_call_s=1.1)
        p.rounds_started("m-c64-n4", rounds=12, warmup_rounds=0, energy_windows=5, estimate_s=13.2)
        p.rounds_finished("m-c64-n4", rounds=12, energy_windows=5, elapsed_s=14.0)
        p.sweep_point("load point", index=2, total=8, point="4 req/s", eta_s=125.0)
        assert "moeperf:" not in capsys.readouterr().out  # never in the test's own captured output
"""

DEFAULT_LINES = [
    "moeperf: loading m (bf16 on cpu, random weights) ...",
    "moeperf: loaded m: 2.50 MB of weights in 1.50 s",
    "moeperf: priming m-c64-n4: 2 discarded calls (the first compiles the decode step) ...",
    "moeperf: primed m-c64-n4: first call 1 min 35 s, second 1.10 s",
    "moeperf: measured m-c64-n4: 12 rounds, 5 energy windows in 14.0 s",
    "moeperf: load point 2/8: 4 req/s; about 2 min 05 s left",
]
VERBOSE_LINE = "moeperf: measuring m-c64-n4: 12 rounds, 5 energy windows, about 13.2 s ..."


@pytest.mark.e2e
@pytest.mark.parametrize("args", [(), ("--capture=fd",), ("--capture=sys",), ("-s",)])
def test_progress_lines_reach_the_terminal_under_every_capture_mode(pytester, args):
    pytester.makepyfile(CALLS)
    # fd capture redirects file descriptor 1: only a process of its own shows whether the lines escape it
    run = pytester.runpytest_subprocess if args in ((), ("--capture=fd",)) else pytester.runpytest
    result = run("-p", "no:cacheprovider", "--moeperf-gate", "off", *args)
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    lines = [ln for ln in out.splitlines() if ln.startswith("moeperf: ") and "gate" not in ln]
    assert lines == DEFAULT_LINES


@pytest.mark.e2e
def test_progress_is_quiet_under_q_and_fuller_under_v(pytester):
    pytester.makepyfile(CALLS)
    quiet = pytester.runpytest("-p", "no:cacheprovider", "--moeperf-gate", "off", "-q")
    quiet.assert_outcomes(passed=1)
    assert not [ln for ln in quiet.outlines if ln.startswith("moeperf: ") and "gate" not in ln]
    verbose = pytester.runpytest("-p", "no:cacheprovider", "--moeperf-gate", "off", "-v")
    verbose.assert_outcomes(passed=1)
    lines = [ln for ln in verbose.outlines if ln.startswith("moeperf: ") and "gate" not in ln]
    assert lines == DEFAULT_LINES[:4] + [VERBOSE_LINE] + DEFAULT_LINES[4:]
