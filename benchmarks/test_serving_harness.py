"""The load generator's own speed (issues 16 and 29). Benchmarks, not timed tests: the figures go to
extra_info (and docs/serving.md), nothing here fails on a slow or busy machine; only a failed request
or a wrong count fails a case.

- in-process: the load generator against a stub backend that answers at once (no sockets).
- over HTTP: against tests/sse_stub_server.py's ``fast`` mode in its own process on loopback (keep-alive,
  every answer written at once: the cheapest server here). ``client-*`` runs the suite's own endpoint
  client (OpenAIBackend on aiohttp, through the load generator); ``raw-aiohttp`` and ``raw-httpx`` run
  the same requests and the same SSE parsing with each library alone, to compare the libraries.
  ``stub-limit`` is a bare asyncio client that writes a request and reads until the answer's end: the
  most requests per second the stub answers on this machine.
"""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_moeperf.serving.harness_speed import measure_harness, run_summary
from pytest_moeperf.serving.load_point import LoadPoint
from pytest_moeperf.serving.loadgen import run_load

STUB = Path(__file__).resolve().parents[1] / "tests" / "sse_stub_server.py"
HTTP_REQUESTS = 4000  # closed loop
OPEN_RATE, OPEN_REQUESTS = 1000.0, 3000  # open loop: a 3 s schedule
OUTPUT_TOKENS = 16
USERS = 64


@pytest.mark.parametrize("mode,value", [("concurrency", 64), ("constant", 1000.0)], ids=["closed-c64", "open-1000rps"])
def test_harness_speed(benchmark, mode, value):
    point = LoadPoint(mode, value)
    holder = {}
    # closed loop: as fast as it goes; open loop: 2,000 requests at 1,000 requests/s is a 2 s schedule
    benchmark.pedantic(lambda: holder.update(measure_harness(point, requests=2000)), rounds=1, iterations=1)
    benchmark.extra_info.update(holder)
    assert holder["harness_failed"] == 0


@pytest.fixture(scope="module")
def stub_url(tmp_path_factory):
    port_file = tmp_path_factory.mktemp("stub") / "port"
    proc = subprocess.Popen([sys.executable, str(STUB), str(port_file), "fast", "900"])
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not port_file.exists():
            pytest.fail(f"the loopback stub did not start (exit {proc.poll()})")
        yield f"http://127.0.0.1:{int(port_file.read_text())}/v1"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _requests(n):
    from pytest_moeperf.serving.backend import ServingRequest

    msgs = ({"role": "user", "content": "hi"},)
    return [ServingRequest(f"r{i}", (1, 2, 3), OUTPUT_TOKENS, prompt_text="hi", messages=msgs) for i in range(n)]


async def _client_run(url, point, n):
    from pytest_moeperf.serving.endpoint import EndpointConfig
    from pytest_moeperf.serving.openai_backend import OpenAIBackend

    backend = OpenAIBackend(EndpointConfig(url, "stub", eos_field="none"))
    await backend.open()
    try:
        await run_load(backend, _requests(200), LoadPoint("concurrency", USERS))  # connections opened, discarded
        return await run_load(backend, _requests(n), point)
    finally:
        await backend.close()


@pytest.mark.parametrize("mode,value,n", [("concurrency", USERS, HTTP_REQUESTS), ("constant", OPEN_RATE, OPEN_REQUESTS),
                                          ("poisson", OPEN_RATE, OPEN_REQUESTS)],
                         ids=["client-closed-c64", "client-open-1000rps", "client-poisson-1000rps"])
def test_http_client_speed(benchmark, stub_url, mode, value, n):
    """The suite's endpoint client against the loopback stub: req/s sustained (closed loop) and how far
    open-loop sends fall behind their schedule (harness_lateness_ms_p50/p99)."""
    point = LoadPoint(mode, value)
    holder = {}
    benchmark.pedantic(lambda: holder.update(run=asyncio.run(_client_run(stub_url, point, n))), rounds=1, iterations=1)
    info = run_summary(holder["run"], point, n, OUTPUT_TOKENS)
    info["client_busy_fraction"] = holder["run"].client["cpu_s"] / holder["run"].client["wall_s"]
    benchmark.extra_info.update(info)
    assert info["harness_failed"] == 0 and all(r.output_tokens == OUTPUT_TOKENS for r in holder["run"].records)


@pytest.mark.parametrize("mode,value,n", [("concurrency", USERS, HTTP_REQUESTS), ("constant", OPEN_RATE, OPEN_REQUESTS)],
                         ids=["client-closed-c64-2proc", "client-open-1000rps-2proc"])
def test_http_client_processes_speed(benchmark, stub_url, mode, value, n):
    """The same client in 2 processes (client_workers.py): one schedule, records merged."""
    from pytest_moeperf.serving.client_workers import run_load_workers
    from pytest_moeperf.serving.endpoint import EndpointConfig
    from pytest_moeperf.serving.openai_backend import OpenAIBackend

    point = LoadPoint(mode, value)
    backend = OpenAIBackend(EndpointConfig(stub_url, "stub", eos_field="none"))
    holder = {}
    benchmark.pedantic(lambda: holder.update(run=run_load_workers(backend, _requests(n), point, workers=2)),
                       rounds=1, iterations=1)
    run = holder["run"]
    info = run_summary(run, point, n, OUTPUT_TOKENS)
    info["client_busy_fraction"] = run.client["cpu_s"] / (run.client["wall_s"] * run.client["workers"])
    benchmark.extra_info.update(info)
    assert info["harness_failed"] == 0 and all(r.output_tokens == OUTPUT_TOKENS for r in run.records)


def _sse_lines_count(lines) -> int:
    """The same per-line work the endpoint client does: SSE framing and one JSON parse per event."""
    from pytest_moeperf.serving.openai_stream import SseReader, TokenTally, parse_event

    reader, tally = SseReader(), TokenTally()
    for line in lines:
        data = reader.feed(line)
        if data is not None and not parse_event(data, "chat").done:
            tally.add(parse_event(data, "chat"))
    return tally.counted


async def _raw(url, library, n):
    body = {"model": "stub", "max_tokens": OUTPUT_TOKENS, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    target = url + "/chat/completions"
    if library == "httpx":
        import httpx

        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
                                   trust_env=False)

        async def one():
            async with client.stream("POST", target, json=body) as resp:
                return _sse_lines_count([line async for line in resp.aiter_lines()])
        close = client.aclose
    else:
        import aiohttp

        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def one():
            async with client.post(target, json=body) as resp:
                return _sse_lines_count([raw.decode().rstrip("\r\n") async for raw in resp.content])
        close = client.close
    try:
        return await _closed_loop(one, n)
    finally:
        await close()


async def _stub_limit(url, n):
    """Bare asyncio streams, one connection per user, the answer read up to its last chunk."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    payload = b'{"model": "stub", "max_tokens": %d, "stream": true}' % OUTPUT_TOKENS
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n" % len(payload)) + payload
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(USERS)]

    def user(conn):
        async def one():
            reader, writer = conn
            writer.write(request)
            await reader.readuntil(b"0\r\n\r\n")
            return OUTPUT_TOKENS
        return one
    users = [user(c) for c in conns]
    try:
        return await _closed_loop(None, n, users)
    finally:
        for _, writer in conns:
            writer.close()


async def _closed_loop(one, n, per_user=None):
    """USERS users, each sends its next request when its last ends; (req/s, client CPU ms/request)."""
    per_user = per_user or [one] * USERS

    async def user(fn):
        for _ in left:
            assert await fn() == OUTPUT_TOKENS

    left = iter(range(2 * USERS))
    await asyncio.gather(*(user(fn) for fn in per_user))  # warm: connections opened, discarded
    left = iter(range(n))
    t0, c0 = time.perf_counter(), time.thread_time()
    await asyncio.gather(*(user(fn) for fn in per_user))
    return n / (time.perf_counter() - t0), (time.thread_time() - c0) * 1e3 / n


@pytest.mark.parametrize("library", ["raw-aiohttp", "raw-httpx", "stub-limit"])
def test_http_library_speed(benchmark, stub_url, library):
    """Closed loop at 64 users, the same requests and SSE parsing with each library alone."""
    n = HTTP_REQUESTS if library != "raw-httpx" else HTTP_REQUESTS // 4  # httpx is slow: a shorter run
    if library == "raw-httpx":
        pytest.importorskip("httpx")
    holder = {}
    coro = (lambda: _stub_limit(stub_url, n)) if library == "stub-limit" else (lambda: _raw(stub_url, library[4:], n))
    benchmark.pedantic(lambda: holder.update(out=asyncio.run(coro())), rounds=1, iterations=1)
    rate, cpu_ms = holder["out"]
    benchmark.extra_info.update({"harness_requests": n, "harness_requests_per_s": rate,
                                 "client_cpu_ms_per_request": cpu_ms, "harness_output_tokens": OUTPUT_TOKENS})
