"""TTFT and TPOT at concurrency 1: an OpenAI-compatible server against the in-process engine,
same checkpoint, same workload, same load generator (docs/evidence/serving-endpoint-cpu-2026-12-02.md quotes a run).

    transformers serve DIR --continuous-batching --cb-block-size 32 --cb-num-blocks 64 \\
        --cb-max-batch-tokens 256 --host 127.0.0.1 --port 8000 &
    python studies/compare_endpoint_engine.py DIR http://127.0.0.1:8000/v1 [--requests 30] [--context 64] [--new 16]

Prints one JSON line per backend (medians and p10/p90 of per-request TTFT and TPOT) and the
difference of the medians. Run both sides with the same OMP_NUM_THREADS on a small CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics


def summarize(name: str, run) -> dict:
    ok = [r for r in run.records if r.ok]
    ttft = [1000 * (r.first_token_s - r.sent_s) for r in ok]
    tpot = [1000 * (r.end_s - r.first_token_s) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    dec = statistics.quantiles
    return {"backend": name, "requests_ok": len(ok), "failed": len(run.records) - len(ok),
            "ttft_ms_p50": statistics.median(ttft), "ttft_ms_p10_p90": dec(ttft, n=10)[::8],
            "tpot_ms_p50": statistics.median(tpot), "tpot_ms_p10_p90": dec(tpot, n=10)[::8],
            "chunks_per_request_p50": statistics.median(len(r.chunk_times_s) for r in ok)}


async def measure(backend, requests) -> object:
    from pytest_moeperf.serving.load_point import LoadPoint
    from pytest_moeperf.serving.loadgen import run_load

    await backend.start()
    try:
        await run_load(backend, requests[:3], LoadPoint("concurrency", 1), timeout_s=600)  # warm-up, discarded
        return await run_load(backend, requests, LoadPoint("concurrency", 1), timeout_s=600)
    finally:
        await backend.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("url")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--new", type=int, default=16)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pytest_moeperf.serving.endpoint import EndpointConfig
    from pytest_moeperf.serving.endpoint_target import FormsPromptCache
    from pytest_moeperf.serving.engine import ContinuousBatchingBackend
    from pytest_moeperf.serving.options import EngineOptions
    from pytest_moeperf.serving.openai_backend import OpenAIBackend
    from pytest_moeperf.serving.workload import LengthSpec, WorkloadSpec, build_workload

    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    forms: dict = {}
    spec = WorkloadSpec(args.requests, LengthSpec("fixed", args.context), LengthSpec("fixed", args.new))
    requests = build_workload(spec, FormsPromptCache(tokenizer, forms))
    out = []
    http = OpenAIBackend(EndpointConfig(args.url, args.checkpoint), tokenizer=tokenizer, forms=forms)
    out.append(summarize("http", asyncio.run(measure(http, requests))))
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32).eval()
    engine = ContinuousBatchingBackend(model, EngineOptions(block_size=32, num_blocks=64, max_batch_tokens=256))
    out.append(summarize("in-process", asyncio.run(measure(engine, requests))))
    for row in out:
        print(json.dumps(row))
    print(json.dumps({"ttft_ms_p50_difference": out[0]["ttft_ms_p50"] - out[1]["ttft_ms_p50"],
                      "tpot_ms_p50_difference": out[0]["tpot_ms_p50"] - out[1]["tpot_ms_p50"]}))


if __name__ == "__main__":
    main()
