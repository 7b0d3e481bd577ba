"""One serving load point, measured: works without pytest (the plugin passes pytest-benchmark's
``pedantic`` as ``run_once``).

``ServingRunner(moeperf_session, serving_options).measure(point, run_once)`` loads the model
(through the suite's session: one model on the device at a time), starts the continuous-batching
engine (kept across the load points of one model and engine setting), warms it, runs the load
with an NVML energy trace on a GPU, and returns extra_info: the metrics of serving/metrics.py,
energy over the steady-state window, allocator and KV-block peaks, and routing statistics.
"""

from __future__ import annotations

import asyncio
import os
import time

from .engine import ContinuousBatchingBackend
from .loadgen import LoadPoint, run_load
from .metrics import load_point_metrics, steady_window, tokens_between
from .options import ServingOptions, ServingPoint
from .sweep import RULE
from .workload import PromptCache, WorkloadSpec, build_workload


GPU_MAX_BATCH_TOKENS = 512  # tokens per engine step on a GPU unless --moeperf-max-batch-tokens
# at most this share of the free memory after loading goes to KV blocks: eager attention materialises
# heads x step tokens x KV read scores per layer and needs the room; SDPA does not
GPU_KV_FRACTION = {"eager": 0.4, "other": 0.8}
GPU_HEADROOM_USERS = 1.25


def gpu_sizing(loaded, options, eng) -> dict:
    """KV blocks for the run's largest concurrency (x1.25, >= 32 users) at its longest request, capped
    at 40 % of the free device memory with eager attention (80 % otherwise); 512 tokens per step. transformers' own default (up to 90 % of
    free memory for blocks, 8192 tokens per step) left GPT-OSS-20B's eager paged attention no room for
    its score matrix on the H200 (baselines/h200-runs/2026-12-02: OOM at the first batch)."""
    import math

    import torch

    from pytest_moeperf.measure.memory import kv_layout

    users = max([int(p.load.value) for p in options.points if p.load.closed_loop and p.model == loaded.name] or [0])
    users = max(32, math.ceil(GPU_HEADROOM_USERS * users))
    longest = max(p.input_len.max + p.output_len.max for p in options.points if p.model == loaded.name)
    block = eng.block_size or 256  # transformers' default block (page) size
    per_request = math.ceil(longest / block) + 1
    layout = kv_layout(loaded.model.config)
    itemsize = loaded.model.dtype.itemsize
    block_bytes = 2 * layout.kv_heads * layout.head_dim * itemsize * block * (layout.layers_full + layout.layers_sliding)
    torch.cuda.empty_cache()  # what the routing pass cached is free for the engine
    free = torch.cuda.mem_get_info()[0]
    eager = "eager" in str(getattr(loaded.model.config, "_attn_implementation", "eager"))
    fraction = GPU_KV_FRACTION["eager" if eager else "other"]
    cap = int(fraction * free // block_bytes)
    wanted = users * per_request
    return {"num_blocks": max(per_request, min(wanted, cap)), "max_batch_tokens": eng.max_batch_tokens or GPU_MAX_BATCH_TOKENS,
            "wanted_blocks": wanted, "cap_blocks": cap, "block_bytes": block_bytes, "free_bytes_at_sizing": free,
            "rule": f"blocks for {users} users x {per_request} blocks, capped at {fraction:.0%} of free memory; "
                    f"{GPU_MAX_BATCH_TOKENS} tokens per step"}


class ServingPointFailed(RuntimeError):
    """A load point could not be measured; one line, recorded in the results log."""


class ServingRunner:
    def __init__(self, session, options: ServingOptions):
        self.session = session  # pytest_moeperf.measure.session.MoeperfSession
        self.options = options
        self.backend: ContinuousBatchingBackend | None = None
        self._backend_key = None
        self._prompts: dict[str, PromptCache] = {}
        self._routing: dict[str, dict | None] = {}
        self._sizing: dict = {}  # (model, dtype) -> GPU KV sizing, computed once

    # --- engine lifecycle -------------------------------------------------------------------
    def _run(self, coro):
        return asyncio.run(coro)

    def close(self) -> None:
        if self.backend is not None:
            backend, self.backend, self._backend_key = self.backend, None, None
            self._run(backend.close())

    def _engine_for(self, point: ServingPoint, loaded=None):
        """The point's engine options; on a GPU the KV cache and the step size are sized here, once per
        model (a later restart must not see other free memory and size differently)."""
        eng = self.options.engine_for(point)
        if self.options.device != "cuda" or (eng.num_blocks is not None and eng.max_batch_tokens is not None):
            return eng
        key = (point.model, point.dtype)
        if key not in self._sizing:
            if loaded is None:
                return None  # not sized yet: the engine is not running for this model
            self._sizing[key] = gpu_sizing(loaded, self.options, eng)
        from dataclasses import replace

        size = self._sizing[key]
        return replace(eng, num_blocks=eng.num_blocks or size["num_blocks"],
                       max_batch_tokens=eng.max_batch_tokens or size["max_batch_tokens"])

    def _ensure_backend(self, point: ServingPoint):
        key = (point.model, point.dtype, self._engine_for(point))
        if self.backend is not None and self._backend_key == key:
            return self.backend
        self.close()  # frees the old KV cache before another model or engine setting
        loaded = self.session.model(point.model, point.dtype, None)
        prompts = self._prompts.setdefault(point.model, PromptCache(loaded.tokenizer))
        if point.model not in self._routing:
            self._routing[point.model] = self._routing_table(loaded, prompts, point)
        engine = self._engine_for(point, loaded)
        key = (point.model, point.dtype, engine)
        backend = self.new_backend(loaded, engine)
        self._run(backend.start())
        self.backend, self._backend_key = backend, key
        self._warm_up(backend, point, prompts)
        return backend

    def _warm_up(self, backend, point: ServingPoint, prompts) -> None:
        """Untimed requests when a backend starts (--moeperf-warmup-requests), at most 4 at once."""
        warm = self.options.warmup_requests
        if warm:
            reqs = build_workload(WorkloadSpec(warm, point.input_len, point.output_len, seed=self.options.seed + 7919),
                                  prompts, prefix="warmup-")
            self._run(run_load(backend, reqs, LoadPoint("concurrency", min(warm, 4)), timeout_s=self.options.timeout_s))

    def new_backend(self, loaded, engine):
        """The backend a model's load points run on (one seam: another ServingBackend, e.g. an
        OpenAI-compatible server, plugs in here; the load generator and metrics do not change)."""
        return ContinuousBatchingBackend(loaded.model, engine, seed=self.options.seed)

    def _routing_table(self, loaded, prompts: PromptCache, point: ServingPoint):
        """Distinct experts per decode step vs batch (MoE only), from the last 64 tokens of the
        point's first 8 prompts (the workload's own, so building them is not extra work)."""
        if loaded.preset.architecture != "moe":
            return None
        loads = [int(p.load.value) for p in self.options.points if p.load.closed_loop] or [1]
        batches, b = [], 1
        while b < max(loads):
            batches.append(b)
            b *= 2
        batches.append(max(loads))
        spec = WorkloadSpec(8, point.input_len, point.output_len, seed=self.options.seed)
        ids = [list(r.prompt_ids[-64:]) for r in build_workload(spec, prompts)]
        from .routing_batch import distinct_experts_vs_batch

        try:
            return distinct_experts_vs_batch(loaded.model, ids, sorted(set(batches)))
        except Exception as exc:  # routing statistics never cost a load point
            return {"unavailable": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"}

    # --- one load point ---------------------------------------------------------------------
    def measure(self, point: ServingPoint, run_once) -> dict:
        import torch

        error = None
        try:
            return self._measure(point, run_once)
        except torch.OutOfMemoryError as exc:
            error = (str(exc).strip().splitlines() or ["CUDA out of memory"])[0]
        except ServingPointFailed:
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            error = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        self.close()  # an engine that failed is not reused; the next point starts a fresh one
        self.session._free_after_failure()
        raise ServingPointFailed(error)

    def _measure(self, point: ServingPoint, run_once) -> dict:
        import torch

        from pytest_moeperf.measure.memory import peak_rss_bytes, reset_peak_rss

        gpu = self._gpu()
        backend = self._ensure_backend(point)
        n = self.options.requests_for(point.load)
        spec = WorkloadSpec(n, point.input_len, point.output_len, seed=self.options.seed)
        requests = build_workload(spec, self._prompts[point.model], prefix=f"{point.load.label}-")
        cuda = self._local_cuda()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss_reset = reset_peak_rss()
        backend.reset_kv_peak()
        meter = self._energy_meter()
        holder: dict = {}

        def once():
            if meter is not None:
                from .energy_trace import EnergyTrace

                with EnergyTrace(meter) as trace:
                    holder["run"] = self._run(run_load(backend, requests, point.load, seed=self.options.seed,
                                                       timeout_s=self.options.timeout_s))
                holder["trace"] = trace.samples
            else:
                holder["run"] = self._run(run_load(backend, requests, point.load, seed=self.options.seed,
                                                   timeout_s=self.options.timeout_s))

        run_once(once)
        run = holder["run"]
        engine_died = not backend.alive()
        self._write_records(point, run)  # before any verdict: no finished request is lost
        info = load_point_metrics(run.records, run.duration_s, self.options.slos, self.options.primary_slo)
        if engine_died and info["requests_ok"] == 0:
            self.close()
        if info["requests_ok"] == 0:
            raise ServingPointFailed(f"no request of {point.point_id} succeeded: {'; '.join(info['errors'][:2])}")
        info.update(self._energy(run, holder.get("trace")))
        info.update(self._describe(point, backend, n, spec))
        if cuda:
            info["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
            info["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
            info["peak_rss_bytes"] = None
        else:
            info["peak_allocated_bytes"] = info["peak_reserved_bytes"] = None
            info["peak_rss_bytes"] = peak_rss_bytes() if rss_reset else None
        routing = self._routing.get(point.model)
        info["routing_vs_batch"] = routing
        info["distinct_experts_at_load"] = None
        if routing and "by_batch" in routing:
            from .routing_batch import at_batch

            info["distinct_experts_at_load"] = at_batch(routing, info.get("mean_in_flight"))
        info.update(self._harness_overhead(point, info))
        info["gpu_uuid"] = gpu.identity().get("uuid") if gpu is not None else None
        info["other_gpu_processes"] = gpu.other_processes() if gpu is not None else []
        if engine_died:  # its loop thread stopped (logged by transformers): the next point starts a new one
            info["engine_died"] = True
            self.close()
        return info

    # where the endpoint runner (endpoint_runner.py) differs: device memory, GPU and energy meter
    def _local_cuda(self) -> bool:
        return self.options.device == "cuda"

    def _gpu(self):
        return self.session.gpu()

    def _energy_meter(self):
        return self.session.energy_meter

    def _harness_overhead(self, point: ServingPoint, info: dict) -> dict:
        """The harness's own latency at this point's concurrency, against a stub that answers at once
        (200 requests, ~10-50 ms), as a fraction of the engine's median E2E. The stub run has no engine
        thread competing for the GIL: clock_delivery_ms_* shows the engine-to-harness hop under load."""
        from .harness_speed import measure_harness

        users = int(point.load.value) if point.load.closed_loop else max(1, round(info.get("mean_in_flight") or 1))
        out_tokens = max(1, round(info["output_tokens_total"] / max(1, info["requests_ok"])))
        h = measure_harness(LoadPoint("concurrency", users), requests=200, output_tokens=out_tokens)
        e2e = info.get("req_e2e_ms_p50")
        return {"harness_added_latency_ms_p50": h["harness_added_latency_ms_p50"],
                "harness_overhead_fraction": h["harness_added_latency_ms_p50"] / e2e if e2e else None}

    def _energy(self, run, trace) -> dict:
        out = {"steady_energy_j": None, "avg_power_w": None, "j_per_output_token": None, "energy_window_s": None,
               "energy_unavailable": self.session.energy_unavailable}
        if trace is None:
            out["energy_unavailable"] = out["energy_unavailable"] or "no NVML energy meter"
            return out
        win = steady_window(run.records)
        if win is None:
            out["energy_unavailable"] = "no steady-state window (fewer requests than users?)"
            return out
        from .energy_trace import window_energy

        res = window_energy(trace, run.origin_s + win[0], run.origin_s + win[1], tokens_between(run.records, *win))
        out.update(res)
        if "energy_unavailable" not in res:
            out["energy_unavailable"] = None
        return out

    def _describe(self, point: ServingPoint, backend, n: int, spec: WorkloadSpec) -> dict:
        loaded = self.session.model(point.model, point.dtype, None)
        desc = backend.describe()
        return {
            "model": point.model, "architecture": loaded.preset.architecture, "weights": loaded.weights,
            "dtype": point.dtype, "backend": "continuous-batching", "device_name": self.session.device_name,
            "load_point": point.load.label, "load_mode": point.load.mode, "load_value": point.load.value,
            "input_len": str(point.input_len), "output_len": str(point.output_len),
            "context_tokens": point.input_len.a if point.input_len.kind == "fixed" else None,
            "new_tokens": point.output_len.a if point.output_len.kind == "fixed" else None,
            "requests_planned": n, "workload_seed": spec.seed, "ignore_eos": spec.ignore_eos,
            "params_total": loaded.params.total, "params_active": loaded.params.active,
            "cuda_graphs": point.cuda_graphs, "engine": desc, "kv_blocks_total": desc.get("kv_blocks_total"),
            "kv_blocks_peak_used": desc.get("kv_blocks_peak_used"),
            "kv_used_fraction_peak": desc.get("kv_used_fraction_peak"),
            "engine_sizing": self._sizing.get((point.model, point.dtype)), "kv_block_tokens": desc.get("kv_block_tokens"),
            "kv_cache_bytes": desc.get("kv_cache_bytes"), "saturation_rule": RULE,
            "records_path": self.options.records_path, "rounds": 1, "samples_kind": "per request",
        }

    def _write_records(self, point: ServingPoint, run) -> None:
        path = self.options.records_path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        run.write_jsonl(path, extra={"point_id": point.point_id, "written": time.time()})
