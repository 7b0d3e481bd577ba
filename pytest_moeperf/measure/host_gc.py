"""Python's garbage collector during the measured rounds: what it cost each round, and a policy for it.

A decode step on a GPU waits for the host between tokens, so a collection that walks the whole heap
(the model, transformers, torch.compile's graphs: ~380k objects for tiny-moe on the CPU here, where
one full collection took 167 ms) lands in that round's latency. Whether a round contains one depends
on how many objects earlier code allocated, which is why it moves between runs of the same code
(issue 21, item 3). ``GcWatch`` times every collection inside each measured round (``gc.callbacks``),
so a run says how much of it was the collector; ``GcPolicy`` chooses what the rounds see:

* ``on``: Python's default, as a deployment runs;
* ``freeze``: one full collection, then ``gc.freeze()`` after the priming calls, so later
  collections skip every object that existed before the rounds (serving engines freeze their
  start-up heap for the same reason); undone after the case;
* ``between-rounds``: no collection inside a round, a young-generation collection after each
  round, outside its timed call (what ``timeit`` and pytest-benchmark's ``--benchmark-disable-gc``
  do); the collector is switched back on after the case.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

POLICIES = ("on", "freeze", "between-rounds")
DEFAULT_POLICY = POLICIES[0]  # Python's own collector, as a deployment runs


@dataclass
class GcWatch:
    """Collections (count, time in ms, generation 2 count) inside each measured round."""

    now: object = time.perf_counter
    rounds: list = field(default_factory=list)  # (collections, gc_ms, full_collections) per round
    _open: list | None = None
    _started: float | None = None
    _registered: bool = False

    def _callback(self, phase, info):
        if self._open is None:
            return
        if phase == "start":
            self._started = self.now()
        elif self._started is not None:
            self._open[0] += 1
            self._open[1] += (self.now() - self._started) * 1000.0
            self._open[2] += int(info.get("generation") == 2)
            self._started = None

    def round_started(self) -> None:
        if not self._registered:
            gc.callbacks.append(self._callback)
            self._registered = True
        self._open = [0, 0.0, 0]

    def round_ended(self) -> None:
        if self._open is not None:
            self.rounds.append(tuple(self._open))
        self._open = None

    def close(self) -> None:
        if self._registered:
            gc.callbacks.remove(self._callback)
            self._registered = False
        self._open = None

    def summary(self, policy: str) -> dict:
        ms = [r[1] for r in self.rounds]
        return {"policy": policy, "gc_ms": ms, "collections": [r[0] for r in self.rounds],
                "full_collections": [r[2] for r in self.rounds], "gc_ms_total": sum(ms),
                "rounds_with_full_collection": sum(1 for r in self.rounds if r[2])}


@dataclass
class GcPolicy:
    """Applies one of POLICIES for the measured rounds and undoes it after (``restore``, idempotent)."""

    name: str = DEFAULT_POLICY
    _applied: bool = False
    _was_enabled: bool = True

    def __post_init__(self):
        if self.name not in POLICIES:
            raise ValueError(f"unknown GC policy {self.name!r}; choose one of {', '.join(POLICIES)}")

    def apply(self) -> None:
        if self._applied or self.name == DEFAULT_POLICY:
            return
        self._applied, self._was_enabled = True, gc.isenabled()
        if self.name == "freeze":
            gc.collect()
            gc.freeze()
        else:
            gc.disable()

    def after_round(self) -> None:
        if self._applied and self.name == "between-rounds":
            gc.collect(1)

    def restore(self) -> None:
        if not self._applied:
            return
        self._applied = False
        if self.name == "freeze":
            gc.unfreeze()
        elif self._was_enabled:
            gc.enable()
