"""Energy over a window chosen after the run: the steady state is known only once every request
has ended, so the NVML total-energy counter is sampled through the run (every 50 ms, with
perf_counter stamps) and read at the window's ends by linear interpolation. The counter itself
updates every 100 ms, so each end is uncertain by at most ~0.1 s of power: <= 2% of a 5 s window.
Reuses pytest_moeperf.measure.energy's meter; on the CPU there is no trace and energy is 'unavailable'.
"""

from __future__ import annotations

import bisect
import threading
import time

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
