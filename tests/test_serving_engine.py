"""The continuous-batching backend on a real tiny model (CPU), and the one place that reads
transformers' internals (cb_config_kwargs, kv_cache_state): these fail loudly if the installed
transformers changes what they rely on."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from pytest_moeperf.serving.backend import BackendError
from pytest_moeperf.serving.engine import ContinuousBatchingBackend, cb_config_kwargs
from pytest_moeperf.serving.options import EngineOptions
from pytest_moeperf.serving.load_point import LoadPoint
from pytest_moeperf.serving.loadgen import run_load
from pytest_moeperf.serving.metrics import load_point_metrics
from pytest_moeperf.serving.slo import MLPERF_SLOS
from pytest_moeperf.serving.workload import LengthSpec, PromptCache, WorkloadSpec, build_workload

CPU_ENGINE = EngineOptions(block_size=32, num_blocks=128, max_batch_tokens=256)


@pytest.fixture(scope="module")
def tiny_moe():
    from pytest_moeperf.model.loading import load_model

    return load_model("tiny-moe", device="cpu", dtype="bf16")


def test_config_fields_match_installed_transformers():
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    fields = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
    kw = cb_config_kwargs(EngineOptions(block_size=64, num_blocks=10, cuda_graphs="off", compile_level=1), fields)
    assert ("page_size" in kw) != ("block_size" in kw), "transformers renamed the KV block size again"
    assert set(kw) <= fields, f"ContinuousBatchingConfig lost {set(kw) - fields}"
    assert kw["use_cuda_graph"] is False and kw["allow_block_sharing"] is False
    ContinuousBatchingConfig(**kw)  # accepted as is


def test_engine_serves_a_closed_loop_with_its_own_timestamps(tiny_moe):
    reqs = build_workload(WorkloadSpec(6, LengthSpec("fixed", 128), LengthSpec("fixed", 5)), PromptCache(tiny_moe.tokenizer))
    assert all(r.input_tokens == 128 for r in reqs) and len({r.prompt_ids for r in reqs}) == 6  # distinct prompts

    async def go():
        backend = ContinuousBatchingBackend(tiny_moe.model, CPU_ENGINE)
        await backend.start()
        try:
            run = await run_load(backend, reqs, LoadPoint("concurrency", 3))
            return run, backend.describe(), backend.alive()
        finally:
            await backend.close()

    run, desc, alive = asyncio.run(go())
    assert alive
    assert [r.request_id for r in run.records] == [r.request_id for r in reqs]
    for rec in run.records:
        assert rec.ok, rec.error
        assert rec.output_tokens == 5 and sum(rec.chunk_tokens) == 5  # EOS ignored: the length is forced
        assert len(rec.engine_times_s) == len(rec.chunk_times_s)
        # one clock (perf_counter): the engine stamps a token before the harness receives it
        assert all(e <= h + 1e-6 for e, h in zip(rec.engine_times_s, rec.chunk_times_s))
        assert rec.info["engine_admitted_s"] >= rec.sent_s - 1e-6
    m = load_point_metrics(run.records, run.duration_s, [], MLPERF_SLOS["mlperf-llama2-70b"])
    assert m["failed_requests"] == 0 and m["req_queue_wait_ms_n"] == 6 and m["clock_delivery_ms_min"] >= 0
    # kv_cache_state read the engine's cache: the settings we asked for and a peak in use
    assert desc["kv_blocks_total"] == 128 and desc["kv_block_tokens"] == 32
    assert desc["kv_cache_bytes"] > 0 and 0 < desc["kv_used_fraction_peak"] <= 1
    assert desc["engine_resolved"]["allow_block_sharing"] is False
    assert tiny_moe.model.config._attn_implementation in ("eager", "sdpa")  # restored at close


def test_closed_engine_refuses_in_one_line(tiny_moe):
    backend = ContinuousBatchingBackend(tiny_moe.model, CPU_ENGINE)
    reqs = build_workload(WorkloadSpec(1, LengthSpec("fixed", 64), LengthSpec("fixed", 2)), PromptCache(tiny_moe.tokenizer))
    run = asyncio.run(run_load(backend, reqs, LoadPoint("concurrency", 1)))
    assert run.records[0].error == "engine not started"
    with pytest.raises(BackendError):
        asyncio.run(backend.stream(reqs[0]).__anext__())


@pytest.mark.filterwarnings("error::FutureWarning")  # 5.24: past_key_values= is deprecated, cache= is not
def test_distinct_experts_grow_with_batch(tiny_moe):
    from pytest_moeperf.serving.routing_batch import at_batch, distinct_experts_vs_batch

    prompts = [list(range(1 + i, 33 + i)) for i in range(8)]
    table = distinct_experts_vs_batch(tiny_moe.model, prompts, [1, 4, 16])
    rows = table["by_batch"]
    assert [r["batch"] for r in rows] == [1, 4, 16]
    assert rows[0]["mean_distinct_experts"] == table["top_k"]  # one token: exactly its top-k
    assert rows[0]["mean_distinct_experts"] <= rows[1]["mean_distinct_experts"] <= rows[2]["mean_distinct_experts"] <= table["experts"]
    assert at_batch(table, 2.5) == pytest.approx(rows[0]["mean_distinct_experts"]
                                                 + (rows[1]["mean_distinct_experts"] - rows[0]["mean_distinct_experts"]) * 0.5)


def test_gpu_sizing_caps_the_kv_cache(monkeypatch):
    """The GPU default: blocks for 1.25x the largest concurrency at the longest request, capped at 40 % of
    free memory, 512 tokens per step (transformers' 90 % / 8192 OOMed GPT-OSS-20B on the H200)."""
    import types

    import torch

    from pytest_moeperf.measure.run_options import parse_options
    from pytest_moeperf.model.presets import get_preset
    from pytest_moeperf.serving.options import parse_serving_options
    from pytest_moeperf.serving.engine_target import gpu_sizing
    from pytest_moeperf.serving.sweep import Sweep

    base = parse_options({"moeperf_gpu": "cpu", "moeperf_models": "gpt-oss-20b"}.get, cuda_available=False)
    raw = {"moeperf_concurrency": "1,8,64", "moeperf_serving_lengths": "2048/64"}
    opts = parse_serving_options(raw.get, base)
    cfg = get_preset("gpt-oss-20b").make_config()
    cfg._attn_implementation = "eager"  # as GPT-OSS loads (sinks: no SDPA)
    loaded = types.SimpleNamespace(name="gpt-oss-20b", model=types.SimpleNamespace(config=cfg, dtype=torch.bfloat16))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (100 * 2**30, 140 * 2**30))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    from dataclasses import replace

    eng = replace(opts.engine_for(opts.points[0]), block_size=None, num_blocks=None, max_batch_tokens=None)  # GPU defaults
    size = gpu_sizing(loaded, Sweep(opts.points), eng)
    per_request = -(-2112 // 256) + 1
    block_bytes = 2 * 8 * 64 * 2 * 256 * 24  # k and v, 8 kv heads x 64, bf16, 256 tokens, 24 layers
    assert size["block_bytes"] == block_bytes and size["max_batch_tokens"] == 512
    assert size["wanted_blocks"] == 80 * per_request and size["num_blocks"] == 80 * per_request
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2**30, 140 * 2**30))  # little free: the cap wins
    small = gpu_sizing(loaded, Sweep(opts.points), eng)
    assert small["num_blocks"] == max(per_request, int(0.4 * 2**30 // block_bytes)) < small["wanted_blocks"]
