"""One round's clock: a stamp per new token, and the timings derived from the stamps. No pytest here.

A stopping criterion, which transformers calls once per new token, stamps each token: the first
stamp is TTFT (prefill included), the gaps are the inter-token latencies. On CUDA the stamp is a
CUDA event recorded on the stream (no host stall), read after the round's closing sync relative to
an event recorded at the round's start; elsewhere the criterion synchronizes the device and reads
the host clock (measure.py's docstring has what each costs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RoundTiming:
    """Host times of one generate() round, in ms from the call's start."""

    e2e_ms: float
    token_ms: tuple[float, ...]  # stamp of each new token (first = TTFT)
    batch_size: int
    throttled: bool = False
    power_capped: bool = False

    @property
    def new_tokens(self) -> int:
        return len(self.token_ms)

    @property
    def ttft_ms(self) -> float:
        return self.token_ms[0]

    @property
    def tpot_ms(self) -> float | None:
        n = self.new_tokens
        return (self.e2e_ms - self.ttft_ms) / (n - 1) if n > 1 else None

    @property
    def itl_ms(self) -> list[float]:
        t = self.token_ms
        return [b - a for a, b in zip(t, t[1:])]

    @property
    def decode_tokens_per_s(self) -> float | None:
        n = self.new_tokens
        span_s = (self.e2e_ms - self.ttft_ms) / 1000.0
        return self.batch_size * (n - 1) / span_s if n > 1 and span_s > 0 else None

    @property
    def e2e_tokens_per_s(self) -> float:
        return self.batch_size * self.new_tokens / (self.e2e_ms / 1000.0)


def _sync_fn(device: str):
    import torch

    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


TOKEN_CLOCKS = ("auto", "event", "sync")


def token_clock_kind(setting: str, device: str) -> str:
    """The clock a round uses: CUDA events on a CUDA device unless ``sync`` is asked for."""
    if setting not in TOKEN_CLOCKS:
        raise ValueError(f"token clock {setting!r}: use one of {', '.join(TOKEN_CLOCKS)}")
    on_cuda = str(device).startswith("cuda")
    if setting == "event" and not on_cuda:
        raise ValueError(f"token clock 'event' needs a CUDA device, not {device!r}; use auto or sync")
    return "event" if setting == "event" or (setting == "auto" and on_cuda) else "sync"


def make_token_clock(sync, kind: str = "sync", event_factory=None, now=time.perf_counter):
    """A transformers StoppingCriteria that stamps each new token (``now()`` seconds: perf_counter).

    ``sync``: sync the device, read the host clock. ``event``: record a CUDA event (no stall);
    ``finish()`` turns the events into host times after the round's closing sync, as the
    round's start time plus the GPU time from an event recorded at that start (the device is
    idle then, so that event fires at once). ``event_factory`` makes the events (tests).
    """
    import torch
    from transformers import StoppingCriteria

    if kind == "event" and event_factory is None:
        def event_factory():
            return torch.cuda.Event(enable_timing=True)

    class TokenClock(StoppingCriteria):
        def __init__(self):
            self.kind = kind
            self.stamps: list[float] = []
            self._events: list = []
            self._start_event = None
            self._t0 = 0.0
            self._not_done = None

        def begin(self, t0: float) -> None:
            """The round starts at host time ``t0``, with the device idle."""
            self.stamps = []
            self._events = []
            self._t0 = t0
            if kind == "event":
                self._start_event = event_factory()
                self._start_event.record()

        def __call__(self, input_ids, scores, **kwargs):
            if kind == "event":
                event = event_factory()
                event.record()
                self._events.append(event)
            else:
                sync()
                self.stamps.append(now())
            if self._not_done is None or self._not_done.shape[0] != input_ids.shape[0]:
                self._not_done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            return self._not_done

        def finish(self) -> None:
            """After the round's closing device sync: event stamps become host times."""
            if kind == "event":
                start = self._start_event
                self.stamps = [self._t0 + start.elapsed_time(e) / 1000.0 for e in self._events]

    return TokenClock()
