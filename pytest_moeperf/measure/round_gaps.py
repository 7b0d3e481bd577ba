"""Where a slow round lost its time: its long gaps between tokens.

On the H200 the static decode's rounds fall on two levels about 9 % apart while the median gap
between tokens (ITL p50) stays the same in both (baselines/h200-runs/2026-12-02b): the slow
rounds hold a few long gaps, not slower steps. For each measured round this records the longest
gap, the token it came before, and the stall: the time the gaps longer than STALL_FACTOR times the
round's median gap spent beyond that median. A stall at the same token in every slow round points
at the generate loop; one that wanders, with ``host_gc`` showing a collection in the same rounds,
at the collector.
"""

from __future__ import annotations

from pytest_moeperf.metrics.stats import median

STALL_FACTOR = 2.0


def round_gaps(token_ms) -> dict:
    """Longest gap (ms), its token (1 = the first token; gaps start at token 2) and stall of one round."""
    gaps = [b - a for a, b in zip(token_ms, token_ms[1:])]
    if not gaps:
        return {"max_gap_ms": None, "max_gap_at_token": None, "stall_ms": 0.0, "long_gaps": 0}
    typical = median(gaps)
    at = max(range(len(gaps)), key=gaps.__getitem__)
    long = [g for g in gaps if g > STALL_FACTOR * typical]
    return {"max_gap_ms": gaps[at], "max_gap_at_token": at + 2, "stall_ms": sum(g - typical for g in long),
            "long_gaps": len(long)}


def summarize(rounds) -> dict:
    """Per-round lists over RoundTiming-like objects (``token_ms``)."""
    per = [round_gaps(r.token_ms) for r in rounds]
    return {k: [p[k] for p in per] for k in ("max_gap_ms", "max_gap_at_token", "stall_ms", "long_gaps")}
