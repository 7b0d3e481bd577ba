"""The load generator: drives any ServingBackend and keeps one record per request.

Closed loop: C users, each sends its next request the moment its last one ends. Open loop:
requests arrive at seeded Poisson times (rate lambda) or at a constant rate, whatever is in
flight. The harness owns the clock (injected: ``MonotonicClock`` in real runs, ``VirtualClock``
in tests), stamps every chunk as it arrives and never drops a request: a failure is a record with
its error. Pure Python and asyncio; no pytest, no torch.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

from .backend import BackendError, Chunk, ServingBackend, ServingRequest, StreamEnd

MODES = ("concurrency", "poisson", "constant")
_LABEL = {"concurrency": "cc", "poisson": "r", "constant": "k"}


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class MonotonicClock:
    """time.perf_counter: the clock transformers stamps its tokens with, so the engine's own
    stamps and the harness's can be compared directly."""

    now = staticmethod(time.perf_counter)

    async def sleep_until(self, t: float) -> None:
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """Discrete-event time for tests: ``sleep_until`` parks the caller; ``run(coro)`` advances time
    to the earliest sleeper whenever every task is parked. Nothing waits on the wall clock."""

    def __init__(self, start: float = 0.0):
        self.t = start
        self._sleepers: list = []
        self._n = 0

    def now(self) -> float:
        return self.t

    async def sleep_until(self, t: float) -> None:
        if t <= self.t:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        self._n += 1
        heapq.heappush(self._sleepers, (t, self._n, fut))
        await fut

    async def sleep(self, dt: float) -> None:
        await self.sleep_until(self.t + dt)

    def run(self, coro):
        async def drive():
            task = asyncio.ensure_future(coro)
            while not task.done():
                for _ in range(64):  # let every ready task run until it parks again
                    await asyncio.sleep(0)
                    if task.done():
                        break
                if task.done():
                    break
                if not self._sleepers:
                    raise RuntimeError("VirtualClock: every task waits on something other than the clock")
                t, _, fut = heapq.heappop(self._sleepers)
                self.t = max(self.t, t)
                if not fut.done():  # a cancelled sleeper (a watchdog no longer needed)
                    fut.set_result(None)
            return task.result()

        return asyncio.run(drive())


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


def arrival_times(point: LoadPoint, n: int, seed: int = 0) -> list[float]:
    """Scheduled send times (s after the start) of an open-loop point: the first request at 0,
    then exponential gaps of mean 1/rate (Poisson, seeded) or gaps of exactly 1/rate."""
    if point.closed_loop:
        raise ValueError("a closed-loop point has no arrival schedule")
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        if i:
            t += rng.expovariate(point.value) if point.mode == "poisson" else 1.0 / point.value
        out.append(t)
    return out


@dataclass(frozen=True)
class RequestRecord:
    """Everything the harness saw of one request; times in seconds after the run's start."""

    request_id: str
    user: int | None  # closed loop: which user sent it
    input_tokens: int
    max_new_tokens: int
    scheduled_s: float  # when it was due (open loop: the arrival; closed loop: when its user was free)
    sent_s: float  # when the harness handed it to the backend
    first_token_s: float | None
    chunk_times_s: tuple[float, ...]  # arrival of each chunk
    chunk_tokens: tuple[int, ...]  # tokens in each chunk
    end_s: float | None
    output_tokens: int
    error: str | None = None
    engine_times_s: tuple[float | None, ...] = ()  # the engine's stamp of each chunk, same origin
    info: dict = field(default_factory=dict)  # StreamEnd.info (engine admission time, ...)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadRun:
    point: LoadPoint
    records: tuple[RequestRecord, ...]
    origin_s: float  # the clock's reading at the run's start (records are relative to it)
    duration_s: float  # start to the last request's end

    def write_jsonl(self, path: str, extra: dict | None = None) -> None:
        """Append one JSON line per request (``extra`` keys on each, e.g. the benchmark's id)."""
        with open(path, "a", encoding="utf-8") as fh:
            for r in self.records:
                fh.write(json.dumps({"point": self.point.label, **(extra or {}), **r.to_json()}) + "\n")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if isinstance(exc, BackendError) else f"{type(exc).__name__}: {text}"


async def _one(backend: ServingBackend, req: ServingRequest, clock, origin: float, scheduled: float,
               user: int | None) -> RequestRecord:
    now = clock.now
    sent = now()
    times: list[float] = []
    counts: list[int] = []
    engine: list = []
    end = None
    out_tokens = None
    info: dict = {}
    error = None
    try:
        async for item in backend.stream(req):
            t = now()
            if type(item) is Chunk:
                times.append(t - origin)
                counts.append(item.tokens)
                engine.append(None if item.engine_time_s is None else item.engine_time_s - origin)
            elif isinstance(item, StreamEnd):
                end = t - origin
                out_tokens = item.output_tokens
                # the engine's own stamps (engine_*_s) move to the records' origin, like chunk stamps
                info = {k: (v - origin if k.startswith("engine_") and k.endswith("_s") and isinstance(v, float) else v)
                        for k, v in item.info.items()}
                break
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a failed request is a record, never an exception of the run
        error = _first_line(exc)
    if end is None:
        end = now() - origin
        if error is None:
            error = "stream ended without a StreamEnd"
    return RequestRecord(
        request_id=req.request_id, user=user, input_tokens=req.input_tokens, max_new_tokens=req.max_new_tokens,
        scheduled_s=scheduled - origin, sent_s=sent - origin, first_token_s=times[0] if times else None,
        chunk_times_s=tuple(times), chunk_tokens=tuple(counts), end_s=end,
        output_tokens=out_tokens if out_tokens is not None else sum(counts), error=error,
        engine_times_s=tuple(engine) if any(e is not None for e in engine) else (), info=info)


async def run_load(backend: ServingBackend, requests: Sequence[ServingRequest], point: LoadPoint,
                   clock: Clock | None = None, seed: int = 0, timeout_s: float | None = None) -> LoadRun:
    """Send ``requests`` at ``point`` and return every request's record (in request order).

    ``timeout_s`` bounds the whole point (a load the engine cannot hold must not hang the run):
    requests still in flight then are cancelled and recorded as failed, unsent ones too."""
    clock = clock or MonotonicClock()
    n = len(requests)
    records: list[RequestRecord | None] = [None] * n
    origin = clock.now()

    async def send(i: int, scheduled: float, user: int | None):
        records[i] = await _one(backend, requests[i], clock, origin, scheduled, user)

    if point.closed_loop:
        users = min(int(point.value), n)
        next_index = iter(range(n))

        async def user_loop(u: int):
            for i in next_index:  # a shared iterator: the next free user takes the next request
                await send(i, clock.now(), u)

        main = asyncio.gather(*(user_loop(u) for u in range(users)))
    else:
        async def dispatch():
            tasks = []
            for i, at in enumerate(arrival_times(point, n, seed)):
                await clock.sleep_until(origin + at)
                tasks.append(asyncio.ensure_future(send(i, origin + at, None)))
            await asyncio.gather(*tasks)

        main = asyncio.ensure_future(dispatch())
    main = asyncio.ensure_future(main)
    if timeout_s is None:
        await main
    else:  # the limit runs on the harness clock (virtual in tests)
        watchdog = asyncio.ensure_future(clock.sleep_until(origin + timeout_s))
        await asyncio.wait({main, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        for task in (main, watchdog):
            if not task.done():
                task.cancel()  # cancels what was in flight; the records below say so
        await asyncio.gather(main, watchdog, return_exceptions=True)
    end = clock.now() - origin
    why = f"load point stopped at its time limit of {timeout_s} s"
    for i, rec in enumerate(records):
        if rec is None:
            records[i] = RequestRecord(requests[i].request_id, None, requests[i].input_tokens,
                                       requests[i].max_new_tokens, end, end, None, (), (), end, 0, error=why)
    done = [r for r in records if r is not None]
    duration = max((r.end_s for r in done if r.end_s is not None and r.error != why), default=end)
    return LoadRun(point, tuple(done), origin, duration)
