"""The endpoint backend end to end: the real ``transformers serve`` (session fixture in conftest.py),
the load generator and the whole serving benchmark against it, a server killed mid-run, and a
server slower than the load (reported as saturation)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pytest_moeperf.serving.backend import BackendError, Chunk, StreamEnd
from pytest_moeperf.serving.chat_prompts import attach_prompts
from pytest_moeperf.serving.endpoint import EndpointConfig
from pytest_moeperf.serving.openai_backend import OpenAIBackend
from test_serving_openai import FakeClock, _collect, _exact_request, _request, _tokenizer

pytestmark = pytest.mark.e2e  # every test here runs a subprocess or pytester


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


def test_short_sweep_against_the_real_server_through_the_load_generator(transformers_server):
    """The end-to-end path: the workload's exact prompts, the load generator, the real server."""
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import run_load
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
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import run_load

    from sse_stub_server import spawned

    with spawned(tmp_path, "ok") as (proc, port):

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
    result.assert_outcomes(passed=2, skipped=1)
    # the prompt-length warning once per load point that ran (other libraries may add their own
    # warnings, e.g. accelerate 1.1's numpy.core deprecation at the floor: not counted here)
    assert result.stdout.str().count("UserWarning: http-stub-c48-n8-cc") == 2, result.stdout.str()
    assert "beyond saturation" in result.stdout.str()
    # the stub counts 3 prompt tokens whatever it gets: reported per load point, not ignored
    result.stdout.fnmatch_lines(["*http-stub-c48-n8-cc1: the server counted a different prompt length than asked "
                                 "in 8 request(s) (e.g. asked 48, served 3)*"])
    info = json.loads((pytester.path / "run.json").read_text())["benchmarks"][0]["extra_info"]
    assert info["prompt_tokens_mismatched_requests"] == 8 and info["output_tokens_mismatched_requests"] == 0


def test_client_workers_send_each_point_from_several_processes(tiny_dense_dir, pytester):
    """--moeperf-client-workers 2: the plugin's runner sends the point from 2 processes; every request
    is recorded once, and the point says how many processes sent it."""
    import json

    from sse_stub_server import serve

    async def main():
        server = await serve("fast")
        port = server.sockets[0].getsockname()[1]
        result = await asyncio.get_running_loop().run_in_executor(None, lambda: _serving_benchmark(
            pytester, f"http://127.0.0.1:{port}/v1", "stub", tiny_dense_dir, "--moeperf-concurrency", "4",
            "--moeperf-requests", "16", "--moeperf-gate", "off", "--moeperf-client-workers", "2"))
        server.close()
        return result
    result = asyncio.run(main())
    result.assert_outcomes(passed=1)
    info = json.loads((pytester.path / "run.json").read_text())["benchmarks"][0]["extra_info"]
    assert (info["client_workers"], info["requests_ok"], info["failed_requests"]) == (2, 16, 0)
    records = [json.loads(x) for x in (pytester.path / "records.jsonl").read_text().splitlines()]
    points = [r for r in records if not r["request_id"].startswith("warmup")]
    assert len(points) == 16 and {r["user"] for r in points} == {0, 1, 2, 3}


def test_same_workload_through_the_real_server_and_the_in_process_engine(transformers_server, capsys):
    """Concurrency 1, the same checkpoint and exact prompts: both complete every request with the
    asked output length; their TTFT/TPOT are printed (docs/serving.md compares longer runs made
    with studies/compare_endpoint_engine.py; timings are not asserted here)."""
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_moeperf.serving.endpoint_target import FormsPromptCache
    from pytest_moeperf.serving.engine import ContinuousBatchingBackend
    from pytest_moeperf.serving.options import EngineOptions
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import run_load
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
