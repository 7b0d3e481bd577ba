"""Service-level objectives: named presets from MLPerf Inference and ``ttft_ms=…,tpot_ms=…`` specs.

A request meets an SLO when it succeeded and every limit the SLO sets holds (vLLM's and
AIPerf's ``--goodput``). A limit on a metric the request has no value for is missed: a request with
one output token has no TPOT, so it misses a TPOT limit (AIPerf agrees; vLLM sets such a request's
TPOT to 0 and counts it as good). One token is no evidence of the decode pace a TPOT limit promises. The presets are MLPerf Inference's published per-benchmark TTFT/TPOT
limits (LLM Server scenario; the "interactive" variants are its tighter pairs), as gathered
in /work/shared/notes/field-facts.md from MLPerf's own sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_moeperf.settings.parsers import positive_number

SLO_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")


@dataclass(frozen=True)
class Slo:
    name: str
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    source: str = "user"

    def meets(self, ttft_ms: float | None, tpot_ms: float | None, e2e_ms: float | None) -> bool:
        for limit, value in ((self.ttft_ms, ttft_ms), (self.tpot_ms, tpot_ms), (self.e2e_ms, e2e_ms)):
            if limit is not None and (value is None or value > limit):
                return False
        return True

    def as_dict(self) -> dict:
        return {"name": self.name, "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "e2e_ms": self.e2e_ms,
                "source": self.source}


_MLPERF = "MLPerf Inference LLM Server scenario, published TTFT/TPOT limits"
MLPERF_SLOS: dict[str, Slo] = {s.name: s for s in (
    Slo("mlperf-llama2-70b", 2000, 200, source=_MLPERF),
    Slo("mlperf-llama2-70b-interactive", 450, 40, source=_MLPERF),
    Slo("mlperf-mixtral-8x7b", 2000, 200, source=_MLPERF),
    Slo("mlperf-llama3.1-8b", 2000, 100, source=_MLPERF),
    Slo("mlperf-llama3.1-8b-interactive", 500, 30, source=_MLPERF),
    Slo("mlperf-llama3.1-405b", 6000, 175, source=_MLPERF),
    Slo("mlperf-llama3.1-405b-interactive", 4500, 80, source=_MLPERF),
    Slo("mlperf-deepseek-r1", 2000, 80, source=_MLPERF),
    Slo("mlperf-deepseek-r1-interactive", 1500, 15, source=_MLPERF),
)}
DEFAULT_SLO = "mlperf-llama2-70b-interactive"  # 450 ms TTFT / 40 ms TPOT: the chat-like pair


def parse_slo(text: str) -> Slo:
    """A preset name or ``ttft_ms=500,tpot_ms=30[,e2e_ms=…]``; anything else is one line naming the fix."""
    raw = str(text).strip()
    if raw in MLPERF_SLOS:
        return MLPERF_SLOS[raw]
    if "=" not in raw:
        raise ValueError(f"--moeperf-slo: unknown SLO {raw!r}; give a preset ({', '.join(MLPERF_SLOS)}) "
                         "or limits like ttft_ms=500,tpot_ms=30")
    limits: dict[str, float] = {}
    for part in raw.split(","):
        key, sep, value = part.strip().partition("=")
        if key not in SLO_METRICS:
            raise ValueError(f"--moeperf-slo: unknown SLO metric {key!r} in {raw!r}; use {', '.join(SLO_METRICS)}")
        limits[key] = positive_number(f"--moeperf-slo {key} (ms)", value)
    return Slo(name=raw, source="--moeperf-slo", **limits)
