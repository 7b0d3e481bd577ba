"""Every energy instrument over a GPU's NVML counter (device/nvml.py), in one place:

- ``EnergyMeter``: a window over the total-energy counter (mJ since driver load), read right after
  the device is synchronized at both ends. The counter updates every 100 ms, so windows under ~1 s
  scatter 16-23% (measured on an H200): the suite measures over windows of >= 5 s spanning
  consecutive measured rounds and refuses windows under 1 s.
- ``PowerSampler``: instant power sampled in a thread and integrated, a cross-check of the counter.
- ``EnergyTrace``: the counter sampled through a serving run, read at the ends of a window chosen
  after the run (the steady state is known only once every request has ended) by linear
  interpolation; each end is uncertain by at most ~0.1 s of power: <= 2% of a 5 s window.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_moeperf.device.nvml import NvmlDevice

MIN_WINDOW_S = 1.0


@dataclass(frozen=True)
class WindowStart:
    t_s: float
    counter_mj: int


@dataclass(frozen=True)
class EnergyWindow:
    duration_s: float
    energy_j: float
    rounds: int = 0
    tokens: int = 0

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else float("nan")


class EnergyMeter:
    """begin_window/end_window over the total-energy counter; the caller synchronizes first.

    ``clock`` (seconds, default ``time.perf_counter``) times the windows; tests hand in their own.
    """

    def __init__(self, device: NvmlDevice, clock: Callable[[], float] = time.perf_counter):
        self.device = device
        self.clock = clock
        device.energy_mj()  # fail now, with the reason, if the counter is unsupported

    def begin_window(self) -> WindowStart:
        return WindowStart(t_s=self.clock(), counter_mj=self.device.energy_mj())

    def elapsed_s(self, start: WindowStart) -> float:
        return self.clock() - start.t_s

    def end_window(self, start: WindowStart, rounds: int = 0, tokens: int = 0) -> EnergyWindow:
        t = self.clock()  # clock then counter, as in begin_window: the two offsets cancel
        mj = self.device.energy_mj()
        return EnergyWindow(duration_s=t - start.t_s, energy_j=(mj - start.counter_mj) / 1000.0,
                            rounds=rounds, tokens=tokens)


@dataclass
class PowerSampler:
    """Integrates instant power sampled every ``interval_s`` in a thread: a cross-check of the counter."""

    device: NvmlDevice
    interval_s: float = 0.01
    samples: list = field(default_factory=list)

    def __enter__(self):
        self._stop = threading.Event()
        self.samples = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.device.power_instant_w()))
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def energy_j(self) -> float:
        """Trapezoid integral of the sampled power over the sampled span."""
        s = self.samples
        return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(s, s[1:]))


# -- the sampled trace (serving) ---------------------------------------------------------------

MIN_STEADY_WINDOW_S = 5.0  # as for the single-request benchmark: shorter windows scatter more


class EnergyTrace:
    def __init__(self, meter, interval_s: float = 0.05):
        self.meter = meter
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (perf_counter s, counter J)

    def __enter__(self):
        self._stop = threading.Event()
        self.samples = []
        self._read()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="moeperf-energy-trace")
        self._thread.start()
        return self

    def _read(self):
        self.samples.append((time.perf_counter(), self.meter.device.energy_mj() / 1000.0))

    def _loop(self):
        while not self._stop.wait(self.interval_s):
            self._read()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._read()


def counter_at(samples: list[tuple[float, float]], t: float) -> float | None:
    """The counter (J) at time ``t`` by linear interpolation between the samples around it."""
    if not samples or t < samples[0][0] or t > samples[-1][0]:
        return None
    times = [s[0] for s in samples]
    i = bisect.bisect_left(times, t)
    if times[i] == t:
        return samples[i][1]
    (t0, e0), (t1, e1) = samples[i - 1], samples[i]
    return e0 + (e1 - e0) * (t - t0) / (t1 - t0)


def window_energy(samples, t0: float, t1: float, tokens: int, min_window_s: float = MIN_STEADY_WINDOW_S) -> dict:
    """Energy, average power and J per output token over [t0, t1] (absolute perf_counter times)."""
    dur = t1 - t0
    if dur < min_window_s:
        return {"energy_unavailable": f"steady-state window {dur:.2f} s < {min_window_s:g} s: "
                                      "send more requests per load point (--moeperf-requests)"}
    a, b = counter_at(samples, t0), counter_at(samples, t1)
    if a is None or b is None:
        return {"energy_unavailable": "steady-state window outside the energy trace"}
    energy = b - a
    return {"steady_energy_j": energy, "avg_power_w": energy / dur,
            "j_per_output_token": energy / tokens if tokens else None, "energy_window_s": dur}
