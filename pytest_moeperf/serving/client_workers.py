"""One load point sent to an OpenAI-compatible server by several client processes, for a server
faster than one core of client (the anchors do the same: AIPerf's workers, GuideLLM's worker
processes).

The parent fixes everything before the point starts: the open-loop arrival times (the same seeded
schedule one process would use), which process sends which request (request i goes to process
i mod W), and, for a closed loop, how many of the C users each process runs. Each process opens its
own connections (the readiness probe already ran in the parent; its EOS field is reused), says it is
ready, and starts at one origin the parent hands to all of them: a reading of ``time.perf_counter``,
which is CLOCK_MONOTONIC on Linux and the same in every process of the machine, so every record
is on one time axis and ``harness_lateness_ms_*`` compares each send with the one schedule.
The records come back in request order; the makespan follows loadgen.makespan over all of them. A process
that dies mid-point leaves its requests as failed records, the others' records are kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from .backend import BackendError
from .load_point import LoadPoint
from .loadgen import LoadRun, RequestRecord, arrival_times, makespan, offered_rate, run_load

WORKER_START_TIMEOUT_S = 120.0  # a process that has not opened its client by then fails the point
START_LEAD_S = 0.05  # the origin is this far after the last process said it is ready


def plan(point: LoadPoint, n: int, workers: int, seed: int = 0) -> list[dict]:
    """Each process's share: request indices, their arrival times (open loop) or its users (closed)."""
    users = min(int(point.value), n) if point.closed_loop else None
    workers = max(1, min(workers, n, users or n))  # never more processes than requests or users
    schedule = None if point.closed_loop else arrival_times(point, n, seed)
    out = []
    for w in range(workers):
        idx = list(range(w, n, workers))
        share = {"indices": idx, "schedule": None, "users": None, "first_user": None}
        if schedule is not None:
            share["schedule"] = [schedule[i] for i in idx]
        else:
            base, extra = divmod(users, workers)
            share["users"] = base + (w < extra)
            share["first_user"] = w * base + min(w, extra)
        out.append(share)
    return out


def _worker(conn, config, eos_field, forms, requests, point, share, timeout_s) -> None:
    """One client process: open, say ready, wait for the origin, send its share, send back records."""
    from .openai_backend import OpenAIBackend

    async def main():
        backend = OpenAIBackend(config, forms=forms)
        await backend.open()
        backend.eos_field = eos_field
        try:
            conn.send("ready")
            origin = conn.recv()
            mine = point if share["users"] is None else LoadPoint("concurrency", share["users"])
            return await run_load(backend, requests, mine, timeout_s=timeout_s, schedule=share["schedule"],
                                  origin_s=origin)
        finally:
            await backend.close()

    try:
        run = asyncio.run(main())
        conn.send(("ok", run.records, run.client, run.duration_s))
    except BaseException as exc:  # one line back to the parent, never a silent hang
        conn.send(("error", f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"))
    finally:
        conn.close()


def run_load_workers(backend, requests, point: LoadPoint, workers: int, seed: int = 0,
                     timeout_s: float | None = None, stop=None) -> LoadRun:
    """``run_load`` over ``workers`` processes, each with its own client like ``backend`` (an
    OpenAIBackend that passed its readiness probe). Blocking: ``run_point`` runs it off the event
    loop; ``stop`` (a threading.Event) ends the wait and the processes (the point was cancelled)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads (torch)
    shares = plan(point, len(requests), workers, seed)
    procs, conns = [], []
    try:
        for share in shares:
            mine = [requests[i] for i in share["indices"]]
            forms = {r.prompt_ids: backend.forms[r.prompt_ids] for r in mine if r.prompt_ids in backend.forms}
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, backend.config, backend.eos_field, forms, mine, point,
                                                     share, timeout_s), daemon=True)
            proc.start()
            child.close()
            procs.append(proc)
            conns.append(parent)
        started = time.monotonic() + WORKER_START_TIMEOUT_S
        for conn in conns:
            first = conn.recv() if _wait(conn, started, stop) else None
            if first != "ready":
                raise BackendError(f"a client process failed to start: {first[1]}" if first else
                                   f"a client process did not start within {WORKER_START_TIMEOUT_S:g} s")
        origin = time.perf_counter() + START_LEAD_S
        for conn in conns:
            conn.send(origin)
        # each process ends its point at timeout_s (run_load's limit) and then sends its records
        ends = None if timeout_s is None else time.monotonic() + timeout_s + WORKER_START_TIMEOUT_S
        results = [_result(conn, ends, stop) for conn in conns]
    except EOFError:
        raise BackendError("a client process ended before the point started") from None
    finally:
        for proc in procs:
            proc.join(timeout=0 if stop is not None and stop.is_set() else 10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
    return _merge(point, requests, shares, results, origin)


async def run_point(backend, requests, point: LoadPoint, seed: int = 0, timeout_s: float | None = None) -> LoadRun:
    """One load point: ``run_load`` in this event loop, or over the backend's ``client_workers``
    processes (EndpointConfig, --moeperf-client-workers) when more than one."""
    workers = getattr(getattr(backend, "config", None), "client_workers", 1)
    if workers <= 1:
        return await run_load(backend, requests, point, seed=seed, timeout_s=timeout_s)
    import threading

    stop = threading.Event()
    try:
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: run_load_workers(backend, requests, point, workers, seed, timeout_s, stop))
    except asyncio.CancelledError:
        stop.set()  # Ctrl-C or the point's limit: the processes are ended, nothing waits on them
        raise


class _Stopped(Exception):
    pass


def _wait(conn, deadline: float | None, stop) -> bool:
    """Whether ``conn`` has something to read before ``deadline`` (time.monotonic); raises when stopped."""
    while not conn.poll(0.1):
        if stop is not None and stop.is_set():
            raise _Stopped("the load point was stopped")
        if deadline is not None and time.monotonic() > deadline:
            return False
    return True


def _result(conn, deadline=None, stop=None):
    try:
        if not _wait(conn, deadline, stop):
            return ("error", "the client process did not send its records in time")
        return conn.recv()
    except EOFError:  # the process died mid-point (killed, out of memory)
        return ("error", "the client process ended without its records")


def _merge(point, requests, shares, results, origin) -> LoadRun:
    """Every request's record in request order; a process that failed mid-point leaves its requests as
    failed records (the others' are kept); all failed: one line."""
    ok = [r for r in results if r[0] == "ok"]
    if not ok:
        raise BackendError(f"every client process failed: {results[0][1]}")
    records = [None] * len(requests)
    end = max(r[3] for r in ok)
    for share, result in zip(shares, results):
        if result[0] != "ok":
            for k, i in enumerate(share["indices"]):
                due = share["schedule"][k] if share["schedule"] is not None else 0.0
                records[i] = RequestRecord(requests[i].request_id, None, requests[i].input_tokens,
                                           requests[i].max_new_tokens, due, due, None, (), (), end, 0, error=result[1])
            continue
        for i, rec in zip(share["indices"], result[1]):
            if rec.user is not None:  # closed loop: the process's users are numbered after the others'
                rec = dataclasses.replace(rec, user=rec.user + share["first_user"])
            records[i] = rec
    client = {"cpu_s": sum(r[2]["cpu_s"] for r in ok), "wall_s": max(r[2]["wall_s"] for r in ok),
              "workers": len(results), "loop_lag_s": [lag for r in ok for lag in r[2].get("loop_lag_s", ())],
              "sends": sum(r[2].get("sends", 0) for r in ok), "last_send_s": max(r[2].get("last_send_s", 0.0) for r in ok)}
    return LoadRun(point, tuple(records), origin, makespan(records, end), client,
                   offered_rate(point, client["sends"], client["last_send_s"]))
