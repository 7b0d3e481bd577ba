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
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

from .backend import BackendError, Chunk, ServingBackend, ServingRequest, StreamEnd
from .load_point import LoadPoint

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


def arrival_times(point: LoadPoint, n: int, seed: int = 0) -> list[float]:
    """Scheduled send times (s after the start) of an open-loop point, vLLM's rule: arrival i is the
    sum of the first i+1 gaps (exponential of mean 1/rate for Poisson, seeded; exactly 1/rate for
    constant), all rescaled so the last of the n arrivals falls at n/rate. The offered rate over
    the schedule is then exactly the asked one (unscaled Poisson gaps offered 3.14/s for an asked
    4/s in one seeded 20-request run), and the first request does not arrive at t = 0."""
    if point.closed_loop:
        raise ValueError("a closed-loop point has no arrival schedule")
    rng = random.Random(seed)
    out, t = [], 0.0
    for _ in range(n):
        t += rng.expovariate(point.value) if point.mode == "poisson" else 1.0 / point.value
        out.append(t)
    if out and out[-1] > 0:
        scale = (n / point.value) / out[-1]
        out = [x * scale for x in out]
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
    duration_s: float  # start to the last request's end (makespan)
    # the client's own cost: CPU seconds of the event loop thread(s) that sent and read the requests
    # (time.thread_time: an in-process engine's own thread is not counted), wall seconds, processes
    client: dict = field(default_factory=dict)
    offered_rate_per_s: float | None = None  # open loop: requests sent / the last send's time

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
                # a request ends at its last content chunk (vLLM's rule: over HTTP the usage chunk and
                # [DONE] come after it and are not the request's latency); the stream's close is kept
                end = times[-1] if times else t - origin
                out_tokens = item.output_tokens
                # the engine's own stamps (engine_*_s) move to the records' origin, like chunk stamps
                info = {k: (v - origin if k.startswith("engine_") and k.endswith("_s") and isinstance(v, float) else v)
                        for k, v in item.info.items()}
                info["stream_end_s"] = t - origin
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


LOOP_TICK_S = 0.01


async def _loop_lag(lags: list) -> None:
    """How late the event loop wakes a timer (every LOOP_TICK_S): a loop busy or starved of CPU wakes
    late, and then every chunk stamp and every send of the point is late by as much."""
    while True:
        due = time.perf_counter() + LOOP_TICK_S
        await asyncio.sleep(LOOP_TICK_S)
        lags.append(time.perf_counter() - due)


def _sending(point: LoadPoint, n: int, schedule, clock: Clock, origin: float, send) -> asyncio.Future:
    """The point's sends as one task: closed loop, each user sends the next request when its last
    ends; open loop, each request at its scheduled time after the origin."""
    if point.closed_loop:
        users = min(int(point.value), n)
        next_index = iter(range(n))

        async def user_loop(u: int):
            for i in next_index:  # a shared iterator: the next free user takes the next request
                await send(i, clock.now(), u)

        return asyncio.ensure_future(asyncio.gather(*(user_loop(u) for u in range(users))))

    async def dispatch():
        tasks = []
        for i, at in enumerate(schedule):
            await clock.sleep_until(origin + at)
            tasks.append(asyncio.ensure_future(send(i, origin + at, None)))
        await asyncio.gather(*tasks)

    return asyncio.ensure_future(dispatch())


async def _until_done_or_limit(main: asyncio.Future, clock: Clock, origin: float,
                               timeout_s: float | None) -> list[float]:
    """Wait for ``main`` or the time limit, cancel what is left, and return the event loop's lags."""
    lags: list[float] = []
    ticker = asyncio.ensure_future(_loop_lag(lags)) if isinstance(clock, MonotonicClock) else None
    watchdog = asyncio.ensure_future(clock.sleep_until(origin + timeout_s)) if timeout_s is not None else None
    try:  # the limit runs on the harness clock (virtual in tests)
        await asyncio.wait({main, watchdog} - {None}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # the time limit, or this run cancelled (Ctrl-C): nothing it started outlives it
        started = [t for t in (main, watchdog, ticker) if t is not None]
        for task in started:
            if not task.done():
                task.cancel()  # cancels what was in flight; the records below say so
        await asyncio.gather(*started, return_exceptions=True)
    return lags


async def run_load(backend: ServingBackend, requests: Sequence[ServingRequest], point: LoadPoint,
                   clock: Clock | None = None, seed: int = 0, timeout_s: float | None = None, *,
                   schedule: Sequence[float] | None = None, origin_s: float | None = None) -> LoadRun:
    """Send ``requests`` at ``point`` and return every request's record (in request order).

    ``timeout_s`` bounds the whole point (a load the engine cannot hold must not hang the run):
    requests still in flight then are cancelled and recorded as failed, unsent ones too.
    A client process of several (client_workers.py) passes its share of the point's schedule
    (arrival times after the origin) and the origin all of them share (a reading of ``clock``)."""
    clock = clock or MonotonicClock()
    n = len(requests)
    records: list[RequestRecord | None] = [None] * n
    # the send schedule is fixed before the point starts (nothing is computed between sends)
    if schedule is None and not point.closed_loop:
        schedule = arrival_times(point, n, seed)
    if origin_s is not None:
        await clock.sleep_until(origin_s)
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    origin = clock.now() if origin_s is None else origin_s

    sends: list[float] = []

    async def send(i: int, scheduled: float, user: int | None):
        sends.append(clock.now() - origin)
        records[i] = await _one(backend, requests[i], clock, origin, scheduled, user)

    main = _sending(point, n, schedule, clock, origin, send)
    lags = await _until_done_or_limit(main, clock, origin, timeout_s)
    failure = main.exception() if main.done() and not main.cancelled() else None
    if failure is not None and not isinstance(failure, asyncio.CancelledError):
        raise failure
    end = clock.now() - origin
    why = f"load point stopped at its time limit of {timeout_s} s"
    for i, rec in enumerate(records):
        if rec is None:
            records[i] = RequestRecord(requests[i].request_id, None, requests[i].input_tokens,
                                       requests[i].max_new_tokens, end, end, None, (), (), end, 0, error=why)
    done = [r for r in records if r is not None]
    client = {"cpu_s": time.thread_time() - cpu0, "wall_s": time.perf_counter() - wall0, "workers": 1,
              "loop_lag_s": lags, "sends": len(sends), "last_send_s": max(sends, default=0.0)}
    return LoadRun(point, tuple(done), origin, makespan(done, end), client,
                   offered_rate(point, len(sends), client["last_send_s"]))


def offered_rate(point: LoadPoint, sends: int, last_send_s: float) -> float | None:
    """Open loop: requests sent / the last send's time after the start (None for a closed loop)."""
    return sends / last_send_s if not point.closed_loop and sends and last_send_s > 0 else None


def makespan(records, end: float) -> float:
    """The one makespan rule, for every outcome: the run's start to the last request's end, where a
    request stopped at the point's time limit, or never sent, ends at the stop. Requests that
    were never answered therefore stretch the denominator of every rate instead of leaving it."""
    return max((r.end_s for r in records if r.end_s is not None), default=end)
