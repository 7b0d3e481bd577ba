"""The GPU's clocks and temperature across a case's rounds, recorded beside the timings.

Two runs of the same code on one GPU differ by a few percent (docs/gate.md, "run-to-run drift").
On a GPU-bound decode a run that sat at a lower SM clock is slower for that reason alone, so each
measured round is followed (outside its timed call) by one NVML read of the SM and memory clocks
and the temperature; ``extra_info["gpu_state"]`` keeps the per-round values and their summary, and
the drift study in docs/evidence/gate-h200.md relates run medians to them. No GPU, or NVML refusing a query: ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pytest_moeperf.metrics.stats import median

FIELDS = ("sm_clock_mhz", "mem_clock_mhz", "temperature_c")


@dataclass(frozen=True)
class GpuState:
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temperature_c: float | None = None

    @classmethod
    def read(cls, gpu) -> "GpuState":
        """One read through the Gpu interface; whatever it cannot tell stays None."""
        if gpu is None:
            return cls()
        try:
            values = gpu.clock_state()
        except Exception:  # a diagnostic: never costs the round
            return cls()
        return cls(**{k: _number(values.get(k)) for k in FIELDS})


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summarize(states: list[GpuState]) -> dict | None:
    """Per-round lists and their summary; None when no round has any value (the CPU)."""
    per = {k: [getattr(s, k) for s in states] for k in FIELDS}
    if not any(v is not None for vs in per.values() for v in vs):
        return None
    out: dict = {k: per[k] for k in FIELDS}
    for k in ("sm_clock_mhz", "mem_clock_mhz"):
        known = [v for v in per[k] if v is not None]
        out[f"{k}_p50"] = median(known) if known else None
        out[f"{k}_min"] = min(known) if known else None
        out[f"{k}_max"] = max(known) if known else None
    temps = [v for v in per["temperature_c"] if v is not None]
    out["temperature_c_first"] = temps[0] if temps else None
    out["temperature_c_last"] = temps[-1] if temps else None
    out["temperature_c_max"] = max(temps) if temps else None
    return out
