"""The OpenAI-compatible endpoint backend: pure protocol parsing, option parsing, and every fault
against a real socket (a closed port, a stub server on loopback, a stub process killed mid-stream)
or the real ``transformers serve`` (session fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moeperf.serving.backend import BackendError, Chunk, ServingRequest, StreamEnd
from pytest_moeperf.serving.chat_prompts import attach_prompts
from pytest_moeperf.serving.endpoint import EndpointConfig, check_base_url, parse_endpoint
from pytest_moeperf.serving.openai_backend import OpenAIBackend, eos_fields
from pytest_moeperf.serving.openai_stream import SseReader, StreamProtocolError, TokenTally, parse_event

HERE = Path(__file__).parent


# ---- pure parsing ----

@given(st.lists(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=20),
                         min_size=1, max_size=3), max_size=5))
def test_sse_reader_returns_each_event_data(events):
    reader, got = SseReader(), []
    for lines in events:
        for line in [": keep-alive", "event: message"] + [f"data: {x}" for x in lines] + [""]:
            data = reader.feed(line)
            if data is not None:
                got.append(data)
    assert got == ["\n".join(lines) for lines in events]
    assert reader.flush() is None


def test_parse_event_chat_completions_done_and_errors():
    ev = parse_event('{"model": "m", "choices": [{"delta": {"role": "assistant"}}]}', "chat")
    assert not ev.content_bearing and ev.model == "m"
    ev = parse_event('{"choices": [{"delta": {"content": "hi"}, "finish_reason": null}]}', "chat")
    assert ev.text == "hi" and ev.content_bearing
    ev = parse_event('{"choices": [{"text": "", "finish_reason": "length"}],'
                     ' "usage": {"prompt_tokens": 5, "completion_tokens": 7}}', "completions")
    assert (ev.finish_reason, ev.prompt_tokens, ev.completion_tokens, ev.content_bearing) == ("length", 5, 7, False)
    assert parse_event("[DONE]", "chat").done
    with pytest.raises(StreamProtocolError, match="server error mid-stream: boom"):
        parse_event('{"error": "boom"}', "chat")
    with pytest.raises(StreamProtocolError, match="not a JSON stream event"):
        parse_event("<html>", "chat")


def test_token_tally_one_per_chunk_unless_usage_runs_along():
    plain = TokenTally()
    counts = [plain.add(parse_event(d, "chat")) for d in (
        '{"choices": [{"delta": {"role": "assistant"}}]}',
        '{"choices": [{"delta": {"content": "ab"}}]}',
        '{"choices": [{"delta": {"content": "c"}}]}',
        '{"choices": [{"delta": {}, "finish_reason": "length"}], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}')]
    assert counts == [0, 1, 1, 0] and (plain.chunks, plain.completion_tokens, plain.prompt_tokens) == (2, 3, 4)
    running = TokenTally()  # vLLM continuous_usage_stats: a cumulative count in every chunk
    counts = [running.add(parse_event('{"choices": [{"delta": {"content": "x"}}], "usage": {"completion_tokens": %d}}'
                                      % n, "chat")) for n in (1, 3, 4)]
    assert counts == [1, 2, 1] and running.counted == 4


def test_eos_fields_per_server_kind():
    assert eos_fields("ignore_eos", 8) == {"ignore_eos": True}
    assert '"eos_token_id": -1' in eos_fields("generation_config", 8)["generation_config"]
    assert eos_fields("none", 8) == {}


# ---- options ----

def _get(**values):
    return lambda name: values.get(name)


def test_parse_endpoint_defaults_and_one_line_errors():
    assert parse_endpoint(_get()) is None
    cfg = parse_endpoint(_get(moeperf_endpoint="http://127.0.0.1:8000/v1/", moeperf_endpoint_model="m",
                              moeperf_endpoint_timeout_s="2.5", moeperf_endpoint_gpu_index="1"))
    assert (cfg.base_url, cfg.model, cfg.api, cfg.request_timeout_s, cfg.energy_gpu) == (
        "http://127.0.0.1:8000/v1", "m", "chat", 2.5, 1)
    assert cfg.origin == "http://127.0.0.1:8000"
    bad = [({"moeperf_endpoint_model": "m"}, "needs --moeperf-endpoint URL"),
           ({"moeperf_endpoint": "http://127.0.0.1:8000/v1"}, "needs --moeperf-endpoint-model"),
           ({"moeperf_endpoint": "127.0.0.1:8000", "moeperf_endpoint_model": "m"}, "not an http"),
           ({"moeperf_endpoint": "http://h:99999/v1", "moeperf_endpoint_model": "m"}, "not a URL"),
           ({"moeperf_endpoint": "http://h/v1", "moeperf_endpoint_model": "m", "moeperf_endpoint_api": "x"}, "chat"),
           ({"moeperf_endpoint": "http://h/v1", "moeperf_endpoint_model": "m", "moeperf_endpoint_timeout_s": "0"},
            "--moeperf-endpoint-timeout-s: 0 must be > 0"),
           ({"moeperf_endpoint": "http://h/v1", "moeperf_endpoint_model": "m", "moeperf_endpoint_gpu_index": "a"},
            "NVML index")]
    for values, message in bad:
        with pytest.raises(ValueError, match=message) as err:
            parse_endpoint(_get(**values))
        assert "\n" not in str(err.value)
    assert check_base_url(" https://example.test/v1 ") == "https://example.test/v1"


# ---- helpers for the socket tests ----

def _request(n=4, prompt_len=3) -> ServingRequest:
    return ServingRequest("r0", tuple(range(1, prompt_len + 1)), n, prompt_text="hi",
                          messages=({"role": "user", "content": "hi"},))


async def _collect(backend, request):
    return [item async for item in backend.stream(request)]


class FakeClock:
    """Time for the readiness loop: advances only when the backend sleeps (no wall-clock waits)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.now += seconds
        await asyncio.sleep(0)


async def _with_stub(mode, body, **cfg):
    from sse_stub_server import serve

    server = await serve(mode)
    port = server.sockets[0].getsockname()[1]
    clock = FakeClock()
    backend = OpenAIBackend(EndpointConfig(f"http://127.0.0.1:{port}/v1", "stub", **cfg), clock=clock,
                            sleep=clock.sleep)
    try:
        return await body(backend)
    finally:
        await backend.close()
        server.close()
        await server.wait_closed()


def _closed_port() -> int:
    from transformers_server import free_port

    return free_port()  # nothing listens there once the probe socket is closed


# ---- faults on real sockets ----

def test_unreachable_url_is_one_line_after_the_bounded_wait():
    clock = FakeClock()
    backend = OpenAIBackend(EndpointConfig(f"http://127.0.0.1:{_closed_port()}/v1", "m", ready_timeout_s=3),
                            clock=clock, sleep=clock.sleep)
    with pytest.raises(BackendError, match=r"not ready after 3 s: ConnectError.*is the server running") as err:
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


def test_server_process_killed_mid_stream_then_connection_refused(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(HERE / "sse_stub_server.py"), str(port_file), "slow"])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        port = int(port_file.read_text())

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
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ---- prompts ----

def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _exact_request(tokenizer, context: int, n: int, rid="q") -> ServingRequest:
    """A workload's request: exact post-template ids (context.py), then the text and messages forms."""
    from pytest_moeperf.model.context import build_exact_context

    ids = build_exact_context(tokenizer, context, seed=context).input_ids
    (request,) = attach_prompts([ServingRequest(rid, tuple(ids), n)], tokenizer)
    return request


@pytest.mark.parametrize("model", ["tiny-dense", "tiny-moe"])
def test_attach_prompts_recovers_text_and_messages_of_exact_contexts(model):
    from pytest_moeperf.model.presets import get_preset
    from pytest_moeperf.model.tokenizer import build_offline_tokenizer

    preset = get_preset(model)
    tokenizer = build_offline_tokenizer(preset.family, preset.vocab_size)
    for context in (70, 97):
        request = _exact_request(tokenizer, context, 4)
        assert len(request.prompt_ids) == context
        assert tokenizer(request.prompt_text, add_special_tokens=False)["input_ids"] == list(request.prompt_ids)
        rendered = tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        assert tokenizer(rendered, add_special_tokens=False)["input_ids"] == list(request.prompt_ids)
    bare = ServingRequest("b", (1, 2, 3), 4, prompt_text="given", messages=({"role": "user", "content": "x"},))
    assert attach_prompts([bare], tokenizer) == [bare]  # forms already given are kept


def test_bad_endpoint_options_are_one_line_usage_errors(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--co", "-p", "no:cacheprovider", "--moeperf-endpoint", "127.0.0.1:8000",
                                "--moeperf-endpoint-model", "m")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --moeperf-endpoint: '127.0.0.1:8000' is not an http(s) URL with a host; "
                                 "give the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1"])
    assert "Traceback" not in result.stderr.str()
    result = pytester.runpytest("--co", "-p", "no:cacheprovider", "--moeperf-endpoint-model", "m")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --moeperf-endpoint-model needs --moeperf-endpoint URL"])


def test_endpoint_labels_and_the_tokenizer_it_needs(tmp_path):
    from pytest_moeperf.serving.endpoint_runner import endpoint_label, load_tokenizer
    from pytest_moeperf.serving.runner import ServingPointFailed

    assert endpoint_label("/srv/models/tiny-dense/") == "http-tiny-dense"
    assert endpoint_label("Qwen/Qwen3-32B") == "http-Qwen3-32B"
    assert endpoint_label("a b:c") == "http-a_b_c"
    with pytest.raises(ServingPointFailed, match="give --moeperf-endpoint-tokenizer PATH"):
        load_tokenizer(EndpointConfig("http://127.0.0.1:1/v1", "not-a-folder"))
    with pytest.raises(ServingPointFailed, match="--moeperf-endpoint-tokenizer: cannot load"):
        load_tokenizer(EndpointConfig("http://127.0.0.1:1/v1", "m", tokenizer=str(tmp_path)))
