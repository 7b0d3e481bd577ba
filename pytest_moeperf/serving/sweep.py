"""Where a sweep saturates, and the knee.

The rule (stated in every run's extra_info and in docs/serving.md): going up in load, a point is
*saturated* when its output tokens/s grew by less than ``min_gain`` (5%) over the best of the
lower loads while its TTFT p50 climbed by more than ``ttft_climb`` (20%) over the previous point.
The knee is the last point before the first saturated one; the sweep stops there (the loads above
it are skipped, not failed). A failed load point counts as saturated. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_GAIN = 0.05
TTFT_CLIMB = 0.20
RULE = (f"saturated when output tokens/s grows < {MIN_GAIN:.0%} over the best lower load while TTFT p50 "
        f"climbs > {TTFT_CLIMB:.0%} over the previous load; the knee is the last load before it")


@dataclass(frozen=True)
class SweepPoint:
    load: float  # users or requests/s
    output_tokens_per_s: float | None  # None: the point failed
    ttft_ms_p50: float | None


def saturation_index(points: list[SweepPoint], min_gain: float = MIN_GAIN, ttft_climb: float = TTFT_CLIMB) -> int | None:
    """Index (in load order) of the first saturated point, or None."""
    pts = sorted(points, key=lambda p: p.load)
    best = None
    for i, p in enumerate(pts):
        if p.output_tokens_per_s is None:
            return i if i else None
        if i and best is not None and pts[i - 1].ttft_ms_p50 and p.ttft_ms_p50 is not None:
            grew = p.output_tokens_per_s >= best * (1 + min_gain)
            climbed = p.ttft_ms_p50 > pts[i - 1].ttft_ms_p50 * (1 + ttft_climb)
            if not grew and climbed:
                return i
        best = p.output_tokens_per_s if best is None else max(best, p.output_tokens_per_s)
    return None


def knee(points: list[SweepPoint]) -> SweepPoint | None:
    """The last point before saturation; None when no point saturated (the knee is not reached)."""
    i = saturation_index(points)
    if i is None or i == 0:
        return None
    return sorted(points, key=lambda p: p.load)[i - 1]


class Sweep:
    """Sweep-wide planning over every load point of a run, above the point runner: what one point
    cannot know alone. The largest concurrency and the longest request of a model (the KV cache is
    sized once for them), the batches the MoE routing table covers, and the saturation stop (the
    points measured so far, by family). ``points``: the run's ServingPoints; ``stop``: --moeperf-sweep stop."""

    def __init__(self, points, stop: bool = True):
        self.points = tuple(points)
        self.stop = stop
        self.done: dict = {}  # family -> [SweepPoint]

    def largest_users(self, model: str) -> int:
        return max([int(p.load.value) for p in self.points if p.load.closed_loop and p.model == model] or [0])

    def longest_request(self, model: str) -> int:
        return max(p.input_len.max + p.output_len.max for p in self.points if p.model == model)

    def routing_batches(self) -> list[int]:
        """1, 2, 4, ... up to the run's largest concurrency, and that concurrency itself."""
        top = max([int(p.load.value) for p in self.points if p.load.closed_loop] or [1])
        out, b = [], 1
        while b < top:
            out.append(b)
            b *= 2
        return sorted(set(out + [top]))

    def record(self, point, info: dict | None) -> None:
        """A measured point (None: it failed, which counts as saturated)."""
        self.done.setdefault(point.family, []).append(
            SweepPoint(point.load.value, info and info.get("output_tokens_per_s"), info and info.get("req_ttft_ms_p50")))

    def beyond_saturation(self, point) -> str | None:
        """Why ``point`` is skipped (its family saturated at a lower load), or None to measure it."""
        if not self.stop:
            return None
        done = self.done.get(point.family, [])
        i = saturation_index(done)
        if i is None or point.load.value <= sorted(done, key=lambda p: p.load)[i].load:
            return None
        k = knee(done)
        return (f"beyond saturation (knee at {k.load:g}, {k.output_tokens_per_s:.4g} tokens/s)" if k else
                "beyond saturation (the lowest load already saturated or failed)")
