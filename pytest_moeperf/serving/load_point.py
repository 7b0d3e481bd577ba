"""One load point's setting: closed-loop users or open-loop arrivals at a rate.

Its own light module (no asyncio): the option parsers build load points at every pytest start,
while the load generator (loadgen.py) that drives them loads only when a serving point runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("concurrency", "poisson", "constant")
_LABEL = {"concurrency": "cc", "poisson": "r", "constant": "k"}


@dataclass(frozen=True)
class LoadPoint:
    """One load: ``concurrency`` users (closed loop) or ``poisson``/``constant`` arrivals at ``value``
    requests/s (open loop)."""

    mode: str
    value: float

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"load mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"{self.mode} must be a finite number > 0, got {self.value!r}")
        if self.mode == "concurrency" and int(self.value) != self.value:
            raise ValueError(f"concurrency must be a whole number of users, got {self.value!r}")

    @property
    def label(self) -> str:
        v = int(self.value) if float(self.value).is_integer() else self.value
        return f"{_LABEL[self.mode]}{v}"

    @property
    def closed_loop(self) -> bool:
        return self.mode == "concurrency"
