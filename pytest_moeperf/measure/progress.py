"""Progress through long phases: what the measurement says it is doing, for whoever listens.

The measurement code (session.py, serving sweeps) calls a :class:`Progress`; the default
:class:`NullProgress` does nothing, so measurement works without pytest and without a
terminal. The pytest plugin passes :class:`pytest_moeperf.plugin.progress_pytest.TerminalProgress`,
which writes the lines through pytest's terminal reporter.

Rule for callers: call these *between* phases, never inside a measured round or an energy
window. A call costs a few microseconds of formatting and a terminal write; outside the
rounds it changes no measured number.

All durations are seconds, all sizes bytes (the names say so). Pure Python: no heavy imports.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """What long-running measurement code reports. Every method must return quickly."""

    def model_loading(self, name: str, *, dtype: str, device: str, weights: str) -> None:
        """A model starts loading (``weights``: "random" or the checkpoint path/id)."""

    def model_loaded(self, name: str, *, weights_bytes: int, load_s: float) -> None:
        """The model is on the device: its weights' bytes and the load time."""

    def priming(self, case_id: str, *, backend: str) -> None:
        """The discarded priming calls start (on the static backend the first compiles)."""

    def primed(self, case_id: str, *, first_call_s: float, second_call_s: float | None) -> None:
        """Priming is done: the first (cold / compiling) and the second call's time."""

    def rounds_started(self, case_id: str, *, rounds: int, warmup_rounds: int,
                       energy_windows: int | None, estimate_s: float | None) -> None:
        """The measured rounds start (``energy_windows``: windows asked for, None without a meter)."""

    def rounds_finished(self, case_id: str, *, rounds: int, energy_windows: int, elapsed_s: float) -> None:
        """The rounds are done: rounds measured, energy windows kept, wall time of the rounds."""

    def sweep_point(self, sweep: str, *, index: int, total: int, point: str,
                    eta_s: float | None) -> None:
        """Point ``index`` (1-based) of ``total`` of a sweep starts (a serving load point, a case of
        the matrix); ``eta_s``: estimated seconds left for this point and the ones after it
        (None until there is something to estimate from)."""

    def message(self, text: str) -> None:
        """Anything else worth a line (one line, no trailing newline)."""


class NullProgress:
    """The default: says nothing."""

    def model_loading(self, name, *, dtype, device, weights):
        pass

    def model_loaded(self, name, *, weights_bytes, load_s):
        pass

    def priming(self, case_id, *, backend):
        pass

    def primed(self, case_id, *, first_call_s, second_call_s):
        pass

    def rounds_started(self, case_id, *, rounds, warmup_rounds, energy_windows, estimate_s):
        pass

    def rounds_finished(self, case_id, *, rounds, energy_windows, elapsed_s):
        pass

    def sweep_point(self, sweep, *, index, total, point, eta_s):
        pass

    def message(self, text):
        pass


NULL_PROGRESS = NullProgress()


@dataclass
class EtaEstimator:
    """Estimated time left for a sweep from the points already done.

    Each point has a key (e.g. (model, backend) for the case matrix: a static-backend case of a
    big model costs minutes of compile, an eager one of a tiny model seconds). A pending point is
    estimated as the mean duration of finished points with its key, else of all finished points.
    ``clock`` is injectable (tests pass a fake; default time.monotonic).
    """

    clock: Callable[[], float] = time.monotonic
    _durations: dict = field(default_factory=dict)
    _started: dict = field(default_factory=dict)

    def start(self, point: Hashable) -> None:
        self._started[point] = self.clock()

    def finish(self, point: Hashable, key: Hashable = None) -> float | None:
        """Record the point's duration under ``key``; returns it (None if it never started)."""
        t0 = self._started.pop(point, None)
        if t0 is None:
            return None
        elapsed = max(0.0, self.clock() - t0)
        self.record(key, elapsed)
        return elapsed

    def record(self, key: Hashable, seconds: float) -> None:
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"a duration must be a finite number of seconds >= 0, not {seconds!r}")
        self._durations.setdefault(key, []).append(float(seconds))

    @property
    def finished(self) -> int:
        return sum(len(v) for v in self._durations.values())

    def estimate(self, key: Hashable = None) -> float | None:
        """Expected seconds for one point with ``key``; None before any point finished."""
        same = self._durations.get(key)
        if same:
            return sum(same) / len(same)
        every = [d for ds in self._durations.values() for d in ds]
        return sum(every) / len(every) if every else None

    def remaining(self, keys) -> float | None:
        """Seconds left for the pending points with these keys (one key per point)."""
        total = 0.0
        for key in keys:
            est = self.estimate(key)
            if est is None:
                return None
            total += est
        return total


def format_bytes(n: int | float | None) -> str:
    """Decimal units, as the report: 41.83 GB, 12.3 MB."""
    if n is None:
        return "? bytes"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def format_seconds(s: float | None) -> str:
    """0.42 s, 12.3 s, 3 min 05 s, 1 h 02 min."""
    if s is None or not math.isfinite(s):
        return "?"
    if s < 10:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


__all__ = ["Progress", "NullProgress", "NULL_PROGRESS", "EtaEstimator", "format_bytes", "format_seconds"]
