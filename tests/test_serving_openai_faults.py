"""The OpenAI-compatible client against faults on real loopback sockets: refused and reset connections, bad
status lines, trickling bodies, deadlines for the whole exchange."""

from __future__ import annotations

import asyncio
import time

import pytest

from pytest_moeperf.serving.backend import BackendError, Chunk, StreamEnd
from pytest_moeperf.serving.endpoint import EndpointConfig
from pytest_moeperf.serving.openai_backend import OpenAIBackend

from test_serving_openai import FakeClock, _closed_port, _collect, _request, _with_stub


# ---- faults on real sockets ----

def test_unreachable_url_is_one_line_after_the_bounded_wait():
    clock = FakeClock()
    backend = OpenAIBackend(EndpointConfig(f"http://127.0.0.1:{_closed_port()}/v1", "m", ready_timeout_s=3),
                            clock=clock, sleep=clock.sleep)
    with pytest.raises(BackendError, match=r"not ready after 3 s: cannot connect to http://127.*is the server running") as err:
        asyncio.run(backend.start())
    assert "\n" not in str(err.value) and clock.now >= 3


def test_stub_stream_ok_counts_chunks_and_usage():
    async def body(backend):
        await backend.start()
        return await _collect(backend, _request(n=3))
    items = asyncio.run(_with_stub("ok", body))
    assert items[:3] == [Chunk(1), Chunk(1), Chunk(1)]
    end = items[-1]
    assert isinstance(end, StreamEnd) and (end.input_tokens, end.output_tokens) == (3, 3)
    assert end.info["finish_reason"] == "length" and "mismatch" not in end.info


def test_stub_detects_the_first_accepted_eos_field_and_reports_mismatches():
    async def body(backend):
        await backend.start()
        items = await _collect(backend, _request(n=5, prompt_len=4))
        return backend, items[-1]
    backend, end = asyncio.run(_with_stub("ok", body))
    assert backend.eos_field == "ignore_eos"  # the stub accepts anything: the first field is kept
    assert end.info["mismatch"] == {"prompt_tokens": {"asked": 4, "served": 3},
                                    "output_tokens": {"asked": 5, "served": 3}}
    info = backend.describe()
    assert info["prompt_tokens_mismatched_requests_since_start"] == 1
    assert info["output_tokens_mismatched_requests_since_start"] == 1
    assert info["server_models"].startswith("unavailable")  # the stub answers an event stream to anything


def test_5xx_is_retried_then_one_line_and_a_failed_request():
    async def body(backend):
        with pytest.raises(BackendError, match=r"not ready after 2 s: HTTP 503: stub answers 503"):
            await backend.start()
        await backend.open()  # the client without the probe, to hit 503 on a request
        with pytest.raises(BackendError, match=r"^HTTP 503: stub answers 503$"):
            await _collect(backend, _request())
    asyncio.run(_with_stub("503", body, ready_timeout_s=2))


def test_server_that_ignores_stream():
    async def body(backend):
        with pytest.raises(BackendError, match="answered stream=true with content-type application/json"):
            await backend.start()
        await backend.open()
        with pytest.raises(BackendError, match="server ignored stream=true"):
            await _collect(backend, _request())
    asyncio.run(_with_stub("json", body))


def test_stream_cut_off_mid_response_keeps_the_chunks_seen():
    async def body(backend):
        await backend.open()
        seen = []
        with pytest.raises(BackendError, match="stream cut off after 2 chunks"):
            async for item in backend.stream(_request()):
                seen.append(item)
        return seen
    assert asyncio.run(_with_stub("cut", body)) == [Chunk(1), Chunk(1)]


def test_request_timeout_is_bounded_and_configurable():
    async def body(backend):
        await backend.open()
        t0 = time.monotonic()
        with pytest.raises(BackendError, match=r"timed out after 0.3 s \(--moeperf-endpoint-timeout-s\)"):
            await _collect(backend, _request())
        return time.monotonic() - t0
    assert asyncio.run(_with_stub("stall", body, request_timeout_s=0.3)) < 5


async def _with_stub_real_clock(mode, body, **cfg):
    """The stub on loopback and a backend on the real clock (the deadlines under test are wall time)."""
    from sse_stub_server import serve

    server = await serve(mode)
    port = server.sockets[0].getsockname()[1]
    backend = OpenAIBackend(EndpointConfig(f"http://127.0.0.1:{port}/v1", "stub", **cfg))
    try:
        return await body(backend, port)
    finally:
        await backend.close()
        server.close()


@pytest.mark.parametrize("mode", ["trickle-status", "trickle-body", "keepalive"])
def test_readiness_probe_gives_up_at_the_ready_timeout_whatever_trickles(mode):
    """Every byte arrives well inside any per-read timeout; only a deadline on the whole exchange ends it."""
    async def body(backend, port):
        t0 = time.monotonic()
        with pytest.raises(BackendError, match=r"not ready after 0.6 s: no complete answer before the ready timeout"
                                               r" \(is the server running") as err:
            await backend.start()
        assert "\n" not in str(err.value)
        return time.monotonic() - t0
    assert asyncio.run(_with_stub_real_clock(mode, body, ready_timeout_s=0.6)) < 30  # a hang would be killed


@pytest.mark.parametrize("mode", ["trickle-status", "trickle-body", "keepalive", "endless"])
def test_request_gives_up_at_its_timeout_whatever_trickles(mode):
    async def body(backend, port):
        await backend.open()
        seen = []
        with pytest.raises(BackendError, match=r"^request timed out after 0.4 s \(--moeperf-endpoint-timeout-s\)$"):
            async for item in backend.stream(_request()):
                seen.append(item)
        return seen
    seen = asyncio.run(_with_stub_real_clock(mode, body, request_timeout_s=0.4))
    assert all(item == Chunk(1) for item in seen) and (len(seen) > 0) == (mode == "endless")


def test_endless_stream_answers_the_probe_at_its_first_event():
    """The probe reads only the head and the first event, so a stream that never ends is ready (its
    requests then end at their own timeout, above)."""
    async def body(backend, port):
        await backend.start()
        return backend.eos_field, backend.identity["server_model"]
    assert asyncio.run(_with_stub_real_clock("endless", body, ready_timeout_s=5, request_timeout_s=0.3)) == (
        "ignore_eos", "stub")


def test_redirect_is_reported_with_the_url_to_use_not_followed():
    async def body(backend, port):
        where = f"http://127.0.0.1:{port}"
        expected = (f"{where}/v1/chat/completions redirects (HTTP 307) to {where}/v2/chat/completions: the suite "
                    f"does not follow redirects; give --moeperf-endpoint {where}/v2")
        with pytest.raises(BackendError) as err:
            await backend.start()
        assert str(err.value) == expected
        await backend.open()
        with pytest.raises(BackendError) as err:
            await _collect(backend, _request())
        assert str(err.value) == expected
    asyncio.run(_with_stub_real_clock("redirect", body, ready_timeout_s=5))


@pytest.mark.e2e
def test_server_process_killed_mid_stream_then_connection_refused(tmp_path):
    from sse_stub_server import spawned

    with spawned(tmp_path, "slow") as (proc, port):

        async def run():
            backend = OpenAIBackend(EndpointConfig(f"http://127.0.0.1:{port}/v1", "stub", request_timeout_s=20))
            await backend.open()
            seen = []
            with pytest.raises(BackendError, match="stream cut off after 2 chunks"):
                async for item in backend.stream(_request()):
                    seen.append(item)
                    if len(seen) == 2:
                        proc.kill()  # the server dies mid-stream
                        proc.wait(timeout=10)
            with pytest.raises(BackendError, match=f"cannot connect to http://127.0.0.1:{port}/v1"):
                await _collect(backend, _request())  # the next request: connection refused
            await backend.close()
        asyncio.run(run())
