"""The in-process target of a serving run: transformers' continuous-batching engine on a model the
suite loads (through its session: one model on the device at a time).

What is particular to it, behind the target interface the point runner uses (serving/runner.py):
the model and its tokenizer's prompts, the engine's KV sizing on a GPU (once per model, for the
sweep's largest concurrency at its longest request), the MoE routing table, this process's device
memory and GPU, and the keys that describe the engine in extra_info.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pytest_moeperf.model.compat import attn_implementation

from .engine import ContinuousBatchingBackend
from .options import ServingOptions, ServingPoint
from .sweep import Sweep
from .workload import PromptCache, WorkloadSpec, build_workload

GPU_MAX_BATCH_TOKENS = 512  # tokens per engine step on a GPU unless --moeperf-max-batch-tokens
# at most this share of the free memory after loading goes to KV blocks: eager attention materialises
# heads x step tokens x KV read scores per layer and needs the room; SDPA does not
GPU_KV_FRACTION = {"eager": 0.4, "other": 0.8}
GPU_HEADROOM_USERS = 1.25


def gpu_sizing(loaded, sweep: Sweep, eng) -> dict:
    """KV blocks for the sweep's largest concurrency (x1.25, >= 32 users) at its longest request, capped
    at 40 % of the free device memory with eager attention (80 % otherwise); 512 tokens per step. transformers' own default (up to 90 % of
    free memory for blocks, 8192 tokens per step) left GPT-OSS-20B's eager paged attention no room for
    its score matrix on the H200 (baselines/h200-runs/2026-12-02: OOM at the first batch)."""
    import torch

    from pytest_moeperf.measure.memory import kv_layout

    users = max(32, math.ceil(GPU_HEADROOM_USERS * sweep.largest_users(loaded.name)))
    block = eng.block_size or 256  # transformers' default block (page) size
    per_request = math.ceil(sweep.longest_request(loaded.name) / block) + 1
    layout = kv_layout(loaded.model.config)
    itemsize = loaded.model.dtype.itemsize
    block_bytes = 2 * layout.kv_heads * layout.head_dim * itemsize * block * (layout.layers_full + layout.layers_sliding)
    torch.cuda.empty_cache()  # what the routing pass cached is free for the engine
    free = torch.cuda.mem_get_info()[0]
    eager = "eager" in str(attn_implementation(loaded.model, "eager"))
    fraction = GPU_KV_FRACTION["eager" if eager else "other"]
    cap = int(fraction * free // block_bytes)
    wanted = users * per_request
    return {"num_blocks": max(per_request, min(wanted, cap)), "max_batch_tokens": eng.max_batch_tokens or GPU_MAX_BATCH_TOKENS,
            "wanted_blocks": wanted, "cap_blocks": cap, "block_bytes": block_bytes, "free_bytes_at_sizing": free,
            "rule": f"blocks for {users} users x {per_request} blocks, capped at {fraction:.0%} of free memory; "
                    f"{GPU_MAX_BATCH_TOKENS} tokens per step"}


class EngineTarget:
    """The in-process continuous-batching engine as a serving target."""

    name = "continuous-batching"

    def __init__(self, session, options: ServingOptions, sweep: Sweep):
        self.session = session  # pytest_moeperf.measure.session.MoeperfSession
        self.options = options
        self.sweep = sweep
        self.local_cuda = options.device == "cuda"
        self._prompts: dict[str, PromptCache] = {}
        self._routing: dict[str, dict | None] = {}
        self._sizing: dict = {}  # (model, dtype) -> GPU KV sizing, computed once

    def _engine_for(self, point: ServingPoint, loaded=None):
        """The point's engine options; on a GPU the KV cache and the step size are sized here, once per
        model (a later restart must not see other free memory and size differently)."""
        eng = self.options.engine_for(point)
        if not self.local_cuda or (eng.num_blocks is not None and eng.max_batch_tokens is not None):
            return eng
        key = (point.model, point.dtype)
        if key not in self._sizing:
            if loaded is None:
                return None  # not sized yet: the engine is not running for this model
            self._sizing[key] = gpu_sizing(loaded, self.sweep, eng)
        size = self._sizing[key]
        return replace(eng, num_blocks=eng.num_blocks or size["num_blocks"],
                       max_batch_tokens=eng.max_batch_tokens or size["max_batch_tokens"])

    def backend_key(self, point: ServingPoint):
        """Points with one key share a running engine; another key restarts it (None: not sized yet)."""
        return (point.model, point.dtype, self._engine_for(point))

    def new_backend(self, point: ServingPoint):
        """The engine for ``point`` (not started), and its key: the model loads, the routing table
        is measured once per MoE model, the KV cache is sized once per model on a GPU."""
        loaded = self.session.model(point.model, point.dtype, None)
        prompts = self.prompts(point)
        if point.model not in self._routing:
            self._routing[point.model] = self._routing_table(loaded, prompts, point)
        engine = self._engine_for(point, loaded)
        return ContinuousBatchingBackend(loaded.model, engine, seed=self.options.seed), (point.model, point.dtype, engine)

    def start(self, backend, run) -> None:
        run(backend.start())

    def prompts(self, point: ServingPoint) -> PromptCache:
        if point.model not in self._prompts:
            self._prompts[point.model] = PromptCache(self.session.model(point.model, point.dtype, None).tokenizer)
        return self._prompts[point.model]

    def _routing_table(self, loaded, prompts: PromptCache, point: ServingPoint):
        """Distinct experts per decode step vs batch (MoE only), from the last 64 tokens of the
        point's first 8 prompts (the workload's own, so building them is not extra work)."""
        if loaded.architecture != "moe":
            return None
        spec = WorkloadSpec(8, point.input_len, point.output_len, seed=self.options.seed)
        ids = [list(r.prompt_ids[-64:]) for r in build_workload(spec, prompts)]
        from .routing_batch import distinct_experts_vs_batch

        try:
            return distinct_experts_vs_batch(loaded.model, ids, self.sweep.routing_batches())
        except Exception as exc:  # routing statistics never cost a load point
            return {"unavailable": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"}

    # --- what the result says about this target --------------------------------------------------
    def gpu(self):
        return self.session.gpu()

    def energy_meter(self):
        return self.session.energy_meter

    def energy_unavailable(self) -> str | None:
        return self.session.energy_unavailable

    def describe(self, point: ServingPoint, backend, run, info: dict) -> dict:
        loaded = self.session.model(point.model, point.dtype, None)
        routing = self._routing.get(point.model)
        at_load = None
        if routing and "by_batch" in routing:
            from .routing_batch import at_batch

            at_load = at_batch(routing, info.get("mean_in_flight"))
        return {"architecture": loaded.architecture, "weights": loaded.weights, "dtype": point.dtype,
                "device_name": self.session.device_name, "params_total": loaded.params.total,
                "params_active": loaded.params.active, "cuda_graphs": point.cuda_graphs,
                "engine_sizing": self._sizing.get((point.model, point.dtype)),
                "routing_vs_batch": routing, "distinct_experts_at_load": at_load}

    def after_failure(self) -> None:
        self.session._free_after_failure()
