"""The OpenAI-compatible endpoint backend: pure protocol parsing, option parsing, and every fault
against a real socket (a closed port, a stub server on loopback, a stub process killed mid-stream)
or the real ``transformers serve`` (session fixture in conftest.py)."""

from __future__ import annotations

import asyncio
import os
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
            "positive"),
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


# ---- the real transformers serve ----

def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _exact_request(tokenizer, context: int, n: int, rid="q") -> ServingRequest:
    """A workload's request: exact post-template ids (context.py), then the text and messages forms."""
    from pytest_moeperf.context import build_exact_context

    ids = build_exact_context(tokenizer, context, seed=context).input_ids
    (request,) = attach_prompts([ServingRequest(rid, tuple(ids), n)], tokenizer)
    return request


@pytest.mark.parametrize("model", ["tiny-dense", "tiny-moe"])
def test_attach_prompts_recovers_text_and_messages_of_exact_contexts(model):
    from pytest_moeperf.presets import get_preset
    from pytest_moeperf.tokenizer import build_offline_tokenizer

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


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_real_transformers_serve_streams_exact_lengths(transformers_server, api):
    tokenizer = _tokenizer(transformers_server.model)
    request = _exact_request(tokenizer, 48, 6)

    async def run():
        backend = OpenAIBackend(EndpointConfig(transformers_server.base_url, transformers_server.model, api=api),
                                tokenizer=tokenizer)
        await backend.start()
        try:
            return backend, await _collect(backend, request)
        finally:
            await backend.close()
    backend, items = asyncio.run(run())
    chunks, end = items[:-1], items[-1]
    assert chunks and all(isinstance(c, Chunk) and c.tokens >= 1 for c in chunks)
    assert end.input_tokens == request.input_tokens  # the server saw exactly the context asked for
    assert end.output_tokens == 6 and end.info["finish_reason"] == "length"
    info = backend.describe()
    assert info["eos_field"] == "generation_config" and "ignore_eos" in info["eos_fields_rejected"][0]
    # 5.17 reports "PATH@main", 5.24 "PATH"
    assert info["server_model"].startswith(transformers_server.model) and info["server_header"] == "uvicorn"
    assert info["prompt_tokens_mismatched_requests_since_start"] == 0
    assert info["output_tokens_mismatched_requests_since_start"] == 0


def test_real_server_wrong_model_name_is_one_clear_line(transformers_server):
    backend = OpenAIBackend(EndpointConfig(transformers_server.base_url, "no-such-model", ready_timeout_s=60))
    with pytest.raises(BackendError, match=r"rejected the request for model 'no-such-model': HTTP 400: Server is "
                                           r"pinned to .*check --moeperf-endpoint-model") as err:
        asyncio.run(backend.start())
    assert "\n" not in str(err.value)


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


def test_short_sweep_against_the_real_server_through_the_load_generator(transformers_server):
    """The end-to-end path: the workload's exact prompts, the load generator, the real server."""
    from pytest_moeperf.serving.loadgen import LoadPoint, run_load
    from pytest_moeperf.serving.workload import PromptCache, WorkloadSpec, build_workload, parse_length

    tokenizer = _tokenizer(transformers_server.model)
    spec = WorkloadSpec(4, parse_length("40", "input"), parse_length("8", "output"))
    requests = attach_prompts(build_workload(spec, PromptCache(tokenizer)), tokenizer)

    async def sweep():
        backend = OpenAIBackend(EndpointConfig(transformers_server.base_url, transformers_server.model),
                                tokenizer=tokenizer)
        await backend.start()
        try:
            return backend, [await run_load(backend, requests, LoadPoint(mode, value), timeout_s=60)
                             for mode, value in (("concurrency", 1), ("concurrency", 4), ("poisson", 50.0))]
        finally:
            await backend.close()
    backend, runs = asyncio.run(sweep())
    for run in runs:
        assert len(run.records) == 4 and all(r.ok for r in run.records), [r.error for r in run.records]
        for r in run.records:
            assert r.sent_s <= r.first_token_s <= r.end_s and r.output_tokens == 8
            assert list(r.chunk_times_s) == sorted(r.chunk_times_s) and 1 <= sum(r.chunk_tokens) <= 8
            assert "mismatch" not in r.info and r.info["finish_reason"] == "length"
    assert backend.describe()["prompt_tokens_mismatched_requests_since_start"] == 0


def test_server_killed_mid_run_is_recorded_failures_not_a_crash(tmp_path):
    """Connection refused mid-run: the stub process dies after the first request; the load point
    still returns one record per request, the rest failed with one-line errors."""
    from pytest_moeperf.serving.loadgen import LoadPoint, run_load

    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(HERE / "sse_stub_server.py"), str(port_file), "ok"])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        port = int(port_file.read_text())

        class KillAfterFirst(OpenAIBackend):
            async def stream(self, request):
                async for item in super().stream(request):
                    if isinstance(item, StreamEnd) and proc.poll() is None:
                        proc.kill()  # the load generator stops reading at StreamEnd: kill before it
                        proc.wait(timeout=10)
                    yield item

        async def run():
            clock = FakeClock()
            backend = KillAfterFirst(EndpointConfig(f"http://127.0.0.1:{port}/v1", "stub"), clock=clock,
                                     sleep=clock.sleep)
            await backend.start()
            try:
                return await run_load(backend, [_request(n=3) for _ in range(4)], LoadPoint("concurrency", 1), timeout_s=60)
            finally:
                await backend.close()
        records = asyncio.run(run()).records
        assert len(records) == 4 and records[0].ok
        assert all(not r.ok and r.error.startswith("cannot connect to") for r in records[1:]), records
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ---- the whole benchmark against a server ----

def _serving_benchmark(pytester, url, model, tokenizer, *args):
    pytester.makepyfile(test_serving=(Path(__file__).parent.parent / "benchmarks" / "test_serving.py").read_text())
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rs", "--moeperf-endpoint", url, "--moeperf-endpoint-model", model,
        "--moeperf-endpoint-tokenizer", tokenizer, "--moeperf-serving-lengths", "48/8", "--moeperf-warmup-requests", "1",
        "--benchmark-json", "run.json", "--moeperf-results", "results.jsonl", "--moeperf-serving-records", "records.jsonl",
        *args)


def test_benchmark_suite_against_the_real_server(transformers_server, pytester):
    """`pytest benchmarks/ --moeperf-endpoint URL --moeperf-endpoint-model NAME`: the serving
    benchmark's load points, metrics, records, report and gate, against the real server."""
    import json

    result = _serving_benchmark(pytester, transformers_server.base_url, transformers_server.model,
                                transformers_server.model, "--moeperf-concurrency", "1,2", "--moeperf-requests", "4")
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*moeperf serving metrics*", "http-*-c48-n8-cc1 *", "*moeperf gate: PASS*"])
    benches = json.loads((pytester.path / "run.json").read_text())["benchmarks"]
    assert [b["param"] for b in benches] == [f"http-{Path(transformers_server.model).name}-c48-n8-cc{c}" for c in (1, 2)]
    for b in benches:
        info = b["extra_info"]
        assert info["backend"] == "openai-endpoint" and info["endpoint"] == transformers_server.base_url
        assert info["requests_ok"] == 4 and info["req_ttft_ms_p50"] > 0 and info["req_tpot_ms_p50"] > 0
        assert info["server_model"].startswith(transformers_server.model) and info["energy_gpu"] is None
        assert info["engine"]["eos_field"] == "generation_config"
        assert info["prompt_tokens_mismatched_requests"] == 0 and info["output_tokens_mismatched_requests"] == 0
        assert "GPU not named" in info["energy_unavailable"]
    records = (pytester.path / "records.jsonl").read_text().splitlines()
    assert len(records) == 8 and all(json.loads(r)["error"] is None for r in records)


@pytest.fixture(scope="module")
def tiny_dense_dir(tiny_checkpoint):
    """Saved before any pytester fixture exists: saving imports torch, and pytester's sys.modules
    snapshot would drop a torch first imported during its test (a second import in this process fails)."""
    return str(tiny_checkpoint("tiny-dense"))


def test_server_slower_than_the_load_is_reported_as_saturation(tiny_dense_dir, pytester):
    """A server that handles one request at a time: more users add no throughput and TTFT climbs,
    so the sweep reports the knee at one user and skips the loads beyond it (no crash, no hang)."""
    import json

    from sse_stub_server import serve

    async def main():
        server = await serve("serial")
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, lambda: _serving_benchmark(
            pytester, f"http://127.0.0.1:{port}/v1", "stub", tiny_dense_dir,
            "--moeperf-concurrency", "1,4,8", "--moeperf-requests", "8", "--moeperf-gate", "off"))
        server.close()
        return result
    result = asyncio.run(main())
    result.stdout.fnmatch_lines(["*http-stub-c48-n8-cc4*", "*concurrency sweep: knee at 1*"])
    result.assert_outcomes(passed=2, skipped=1, warnings=2)
    assert "beyond saturation" in result.stdout.str()
    # the stub counts 3 prompt tokens whatever it gets: reported per load point, not ignored
    result.stdout.fnmatch_lines(["*http-stub-c48-n8-cc1: the server counted a different prompt length than asked "
                                 "in 8 request(s) (e.g. asked 48, served 3)*"])
    info = json.loads((pytester.path / "run.json").read_text())["benchmarks"][0]["extra_info"]
    assert info["prompt_tokens_mismatched_requests"] == 8 and info["output_tokens_mismatched_requests"] == 0


def test_same_workload_through_the_real_server_and_the_in_process_engine(transformers_server, capsys):
    """Concurrency 1, the same checkpoint and exact prompts: both complete every request with the
    asked output length; their TTFT/TPOT are printed (docs/serving.md compares longer runs made
    with tools/compare_endpoint_engine.py; timings are not asserted here)."""
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_moeperf.serving.endpoint_runner import FormsPromptCache
    from pytest_moeperf.serving.engine import ContinuousBatchingBackend, EngineOptions
    from pytest_moeperf.serving.loadgen import LoadPoint, run_load
    from pytest_moeperf.serving.workload import LengthSpec, WorkloadSpec, build_workload

    tokenizer = _tokenizer(transformers_server.model)
    forms: dict = {}
    spec = WorkloadSpec(3, LengthSpec("fixed", 48), LengthSpec("fixed", 8))
    requests = build_workload(spec, FormsPromptCache(tokenizer, forms))
    model = AutoModelForCausalLM.from_pretrained(transformers_server.model, dtype=torch.float32).eval()
    backends = {"http": OpenAIBackend(EndpointConfig(transformers_server.base_url, transformers_server.model),
                                      tokenizer=tokenizer, forms=forms),
                "in-process": ContinuousBatchingBackend(model, EngineOptions(block_size=32, num_blocks=64,
                                                                             max_batch_tokens=256))}

    async def measure(backend):
        await backend.start()
        try:
            return await run_load(backend, requests, LoadPoint("concurrency", 1), timeout_s=120)
        finally:
            await backend.close()
    for name, backend in backends.items():
        records = asyncio.run(measure(backend)).records
        assert [(r.ok, r.input_tokens, r.output_tokens) for r in records] == [(True, 48, 8)] * 3, records
        ttft = sorted(1000 * (r.first_token_s - r.sent_s) for r in records)[1]
        tpot = sorted(1000 * (r.end_s - r.first_token_s) / 7 for r in records)[1]
        with capsys.disabled():
            print(f"\n{name}: TTFT p50 {ttft:.2f} ms, TPOT p50 {tpot:.3f} ms (3 requests, concurrency 1)")


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
