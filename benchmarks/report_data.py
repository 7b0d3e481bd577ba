"""Synthetic pytest-benchmark documents for the report's own cost (benchmarks/test_report_cost.py).

A run of ``n`` deployment cases shaped like benchmarks/test_deployment.py's: models (MoE and dense)
x contexts x variants (dtype, backend, decoding, batch size), each with its rounds' samples and the
moeperf metrics the report reads. Seeded: the same ``n`` and seed give the same document.
"""

from __future__ import annotations

import itertools

import numpy as np

CONTEXTS = [128 * 2**i for i in range(5)] + [3000 + 997 * i for i in range(20)]
VARIANTS = [dict(zip(("dtype", "backend", "decoding"), v))
            for v in itertools.product(("bf16", "fp16"), ("eager", "static"), ("greedy", "sampling"))]
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
ROUNDS = 10


def _case_id(model: str, context: int, v: dict, batch: int) -> str:
    parts = [f"{model}-c{context}-n64"]
    parts += [v["dtype"]] if v["dtype"] != "bf16" else []
    parts += [v["backend"]] if v["backend"] != "eager" else []
    parts += [f"b{batch}"] if batch != 1 else []
    parts += [v["decoding"]] if v["decoding"] != "greedy" else []
    return "-".join(parts)


def _bench(rng: np.random.Generator, model: str, arch: str, context: int, v: dict, batch: int) -> dict:
    case = _case_id(model, context, v, batch)
    ttft = rng.lognormal(np.log(20 + context / 100), 0.1, ROUNDS)
    tpot = rng.lognormal(np.log(10 if arch == "moe" else 25), 0.1, ROUNDS)
    e2e = ttft + 63 * tpot
    ei = {"model": model, "architecture": arch, "dtype": v["dtype"], "backend": v["backend"], "decoding": v["decoding"],
          "batch_size": batch, "context_mode": "exact", "experts": None, "device_name": "synthetic",
          "context_tokens": context, "new_tokens": 64, "rounds": ROUNDS, "params_total": 2e10,
          "params_active": 3.6e9 if arch == "moe" else 2e10, "ttft_ms": float(np.median(ttft)),
          "ttft_ms_p95": float(np.percentile(ttft, 95)), "tpot_ms": float(np.median(tpot)),
          "itl_ms_p50": float(np.median(tpot)), "e2e_ms_p50": float(np.median(e2e)),
          "e2e_ms_p95": float(np.percentile(e2e, 95)), "decode_tokens_per_s": float(1000 / np.median(tpot)),
          "e2e_tokens_per_s": float(64000 / np.median(e2e)), "weights_bytes": 4.2e10,
          "peak_allocated_bytes": 4.4e10 + context * 1e5, "peak_reserved_bytes": 4.5e10 + context * 1e5,
          "kv_cache_bytes": context * 2.5e4, "kv_cache_measured_bytes": context * 2.5e4,
          "energy_j": float(np.median(e2e)) * 0.3, "tokens_per_j": 0.2, "j_per_1k_tokens": 5000.0,
          "samples": {"ttft_ms": ttft.tolist(), "tpot_ms": tpot.tolist(), "e2e_ms": e2e.tolist()}}
    data = (e2e / 1000).tolist()
    return {"group": None, "name": f"test_generate[{case}]",
            "fullname": f"benchmarks/test_deployment.py::test_generate[{case}]", "params": {"moeperf_case": case},
            "param": case, "extra_info": ei,
            "stats": {"min": min(data), "max": max(data), "mean": float(np.mean(data)), "median": float(np.median(data)),
                      "rounds": ROUNDS, "data": data}}


def deployment_document(n: int, seed: int = 0, models: int = 10) -> dict:
    """A run of the first ``n`` cases of ``models`` models x contexts x variants x batch sizes (half MoE,
    half dense; n <= models x 1,000): each model's 25 core cases first, then the variants."""
    rng = np.random.default_rng(seed)
    names = [(f"moe-{i}", "moe") for i in range(models - models // 2)] + [(f"dense-{i}", "dense")
                                                                        for i in range(models // 2)]
    grid = itertools.product(BATCHES, VARIANTS, names, CONTEXTS)
    benches = [_bench(rng, m, a, c, v, b) for b, v, (m, a), c in itertools.islice(grid, n)]
    return {"machine_info": {"node": "synthetic", "moeperf_device": "cpu", "python_version": "3.11"},
            "commit_info": {"id": "0" * 40, "branch": "main"}, "benchmarks": benches,
            "datetime": "2026-12-02T00:00:00", "version": "5.3.1"}
