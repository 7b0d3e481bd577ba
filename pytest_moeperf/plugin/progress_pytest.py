"""Progress lines through pytest's own terminal reporter (the plugin's :class:`Progress`).

Verbosity: ``-q`` (or quieter) prints nothing; the default prints the case's place in the
matrix with an estimate of the time left, the model load (name, bytes, seconds), priming (the
first call's time when done) and the measured rounds with their energy windows; ``-v`` adds a
line when the rounds start (planned rounds and an estimate of their time).

Capture: like pytest's live logging, each line is written with capturing suspended
(``CaptureManager.global_and_fixture_disabled``), so the lines reach the terminal under
``--capture=fd|sys|tee-sys`` as under ``-s`` and never land in a test's captured output.
The lines are written only between phases (session.py calls them outside the rounds).

Imports nothing heavy: plugin.py registers this at configure time.
"""

from __future__ import annotations

import pytest

from pytest_moeperf.measure.progress import EtaEstimator, NullProgress, format_bytes, format_seconds

PREFIX = "moeperf"


class TerminalProgress(NullProgress):
    """Writes :class:`pytest_moeperf.measure.progress.Progress` events as lines; also a pytest plugin that
    reports each case's place in the matrix (a sweep) with the estimated time left."""

    def __init__(self, config, eta: EtaEstimator | None = None):
        self.config = config
        self.eta = eta or EtaEstimator()
        self._items: list = []  # the moeperf items to run, in order
        self._case_of = None  # item -> Case (set by the plugin)

    # --- where lines go ---------------------------------------------------------------------
    @property
    def verbosity(self) -> int:
        return int(getattr(self.config.option, "verbose", 0) or 0)

    def _reporter(self):
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def write(self, text: str, min_verbosity: int = 0) -> None:
        if self.verbosity < min_verbosity:
            return
        tr = self._reporter()
        if tr is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if capman is None:
            tr.write_line(f"{PREFIX}: {text}")
            return
        with capman.global_and_fixture_disabled():
            tr.write_line(f"{PREFIX}: {text}")
            tr.flush()

    # --- Progress ---------------------------------------------------------------------------
    def model_loading(self, name, *, dtype, device, weights):
        what = "random weights" if weights == "random" else weights
        self.write(f"loading {name} ({dtype} on {device}, {what}) ...")

    def model_loaded(self, name, *, weights_bytes, load_s):
        self.write(f"loaded {name}: {format_bytes(weights_bytes)} of weights in {format_seconds(load_s)}")

    def priming(self, case_id, *, backend):
        why = "the first compiles the decode step" if backend == "static" else "the first is cold"
        self.write(f"priming {case_id}: 2 discarded calls ({why}) ...")

    def primed(self, case_id, *, first_call_s, second_call_s):
        second = f", second {format_seconds(second_call_s)}" if second_call_s is not None else ""
        self.write(f"primed {case_id}: first call {format_seconds(first_call_s)}{second}")

    def rounds_started(self, case_id, *, rounds, warmup_rounds, energy_windows, estimate_s):
        warm = f" after {warmup_rounds} warm-up" if warmup_rounds else ""
        energy = f", {energy_windows} energy windows" if energy_windows else ""
        self.write(f"measuring {case_id}: {rounds} rounds{warm}{energy}, about {format_seconds(estimate_s)} ...",
                   min_verbosity=1)

    def rounds_finished(self, case_id, *, rounds, energy_windows, elapsed_s):
        self.write(f"measured {case_id}: {rounds} rounds, {energy_windows} energy windows "
                   f"in {format_seconds(elapsed_s)}")

    def sweep_point(self, sweep, *, index, total, point, eta_s):
        left = f"; about {format_seconds(eta_s)} left" if eta_s is not None else ""
        self.write(f"{sweep} {index}/{total}: {point}{left}")

    def message(self, text):
        self.write(text)

    # --- the case matrix as a sweep (pytest hooks) -------------------------------------------
    def track_cases(self, case_of) -> None:
        """``case_of(item)`` gives the Case (or serving ServingPoint) of a moeperf item, or None for other
        tests; several calls chain (the serving plugin adds its load points to the cases)."""
        previous = self._case_of
        self._case_of = case_of if previous is None else (lambda item: previous(item) or case_of(item))

    def _key(self, item):
        """The time estimate's key: what makes two items take about as long."""
        case = self._case_of(item) if self._case_of else None
        if case is None:
            return None
        return getattr(case, "eta_key", None) or (case.model, case.backend, case.dtype, case.experts)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session):
        self._items = [i for i in session.items if self._key(i) is not None]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item):
        if item not in self._items:
            return
        index = self._items.index(item)
        pending = [self._key(i) for i in self._items[index:]]
        case = self._case_of(item)
        self.sweep_point("point" if hasattr(case, "point_id") else "case", index=index + 1, total=len(self._items), point=case.case_id,
                         eta_s=self.eta.remaining(pending))
        self.eta.start(item.nodeid)

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            item_key = next((self._key(i) for i in self._items if i.nodeid == report.nodeid), None)
            self.eta.finish(report.nodeid, item_key)
