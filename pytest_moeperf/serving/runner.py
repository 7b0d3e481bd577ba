"""One serving load point, measured: works without pytest (the plugin passes pytest-benchmark's
``pedantic`` as ``run_once``).

Serving varies the target, not the runner. ``ServingRunner(target, options).measure(point, run_once)``
gets the point's backend from the target (started once and kept across the points it can serve,
then warmed), runs the load with an NVML energy trace when the target has a meter, writes every
request's record, and builds extra_info once: the metrics of serving/metrics.py, energy over the
steady-state window, memory, the client's cost and the keys every point carries, with the
target's own keys (``target.describe``). Targets: the in-process engine (engine_target.py) and an
OpenAI-compatible server (endpoint_target.py). Sweep-wide planning lives in sweep.Sweep, above.

A target has: ``name``; ``local_cuda`` (this process's allocator measures the server);
``backend_key(point)`` (points with one key share a running backend); ``new_backend(point)`` ->
(backend, key), not started; ``start(backend, run)``; ``prompts(point)``; ``gpu()``;
``energy_meter()``; ``energy_unavailable()``; ``describe(point, backend, run, info)``;
``after_failure()``.
"""

from __future__ import annotations

import asyncio
import os
import time

from .client_workers import run_point
from .harness_speed import client_cost
from .load_point import LoadPoint
from .loadgen import run_load
from .metrics import load_point_metrics, point_failure, steady_window, tokens_between
from .options import ServingOptions, ServingPoint
from .sweep import RULE
from .workload import WorkloadSpec, build_workload


class ServingPointFailed(RuntimeError):
    """A load point could not be measured; one line, recorded in the results log."""


class ServingRunner:
    def __init__(self, target, options: ServingOptions):
        self.target = target
        self.options = options
        self.backend = None
        self._backend_key = None
        self._loop: asyncio.Runner | None = None

    # --- engine lifecycle -------------------------------------------------------------------
    def _run(self, coro):
        """Run ``coro`` on the backend's one event loop. The loop lives as long as the backend: the
        engine thread delivers its outputs into it, and HTTP connections belong to it, so it is
        closed only after the backend stopped (close()). asyncio.Runner turns Ctrl-C into a
        cancellation of the running point first (its requests are cancelled in the engine), then
        KeyboardInterrupt."""
        if self._loop is None:
            self._loop = asyncio.Runner()
        return self._loop.run(coro)

    def close(self) -> None:
        """The one teardown path (end of session, a failed engine, Ctrl-C): stop the backend while
        its loop is still open, then close the loop."""
        try:
            if self.backend is not None:
                backend, self.backend, self._backend_key = self.backend, None, None
                self._run(backend.close())
        finally:
            if self._loop is not None:
                loop, self._loop = self._loop, None
                loop.close()

    def _ensure_backend(self, point: ServingPoint):
        if self.backend is not None and self._backend_key == self.target.backend_key(point):
            return self.backend
        self.close()  # frees the old KV cache before another model or engine setting
        backend, key = self.target.new_backend(point)
        self.target.start(backend, self._run)
        self.backend, self._backend_key = backend, key
        self._warm_up(backend, point)
        return backend

    def _warm_up(self, backend, point: ServingPoint) -> None:
        """Untimed requests when a backend starts (--moeperf-warmup-requests), at most 4 at once."""
        warm = self.options.warmup_requests
        if warm:
            reqs = build_workload(WorkloadSpec(warm, point.input_len, point.output_len, seed=self.options.seed + 7919),
                                  self.target.prompts(point), prefix="warmup-")
            self._run(run_load(backend, reqs, LoadPoint("concurrency", min(warm, 4)), timeout_s=self.options.timeout_s))

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
        self.close()  # a backend that failed is not reused; the next point starts a fresh one
        self.target.after_failure()
        raise ServingPointFailed(error)

    def _measure(self, point: ServingPoint, run_once) -> dict:
        import torch

        from pytest_moeperf.measure.memory import peak_rss_bytes, reset_peak_rss

        gpu = self.target.gpu()
        backend = self._ensure_backend(point)
        n = self.options.requests_for(point.load)
        spec = WorkloadSpec(n, point.input_len, point.output_len, seed=self.options.seed)
        requests = build_workload(spec, self.target.prompts(point), prefix=f"{point.load.label}-")
        cuda = self.target.local_cuda
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss_reset = reset_peak_rss()
        backend.reset_kv_peak()
        run, trace = self._load(backend, requests, point, run_once)
        engine_died = not backend.alive()
        self._write_records(point, run)  # before any verdict: no finished request is lost
        info = load_point_metrics(run.records, run.duration_s, self.options.slos, self.options.primary_slo)
        info["offered_rate_per_s"] = run.offered_rate_per_s
        failure = point_failure(info)
        if failure:
            if engine_died:
                self.close()
            raise ServingPointFailed(failure)
        info.update(self._energy(run, trace))
        info.update(self._describe(point, backend, spec))
        info.update(self.target.describe(point, backend, run, info))
        if cuda:
            info["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
            info["peak_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
            info["peak_rss_bytes"] = None
        else:
            info["peak_allocated_bytes"] = info["peak_reserved_bytes"] = None
            info["peak_rss_bytes"] = peak_rss_bytes() if rss_reset else None
        # the client's own cost, measured in this point against this target (harness_speed.client_cost)
        info.update(client_cost(run, info.get("req_e2e_ms_p50"), info.get("harness_lateness_ms_p99")))
        info["gpu_uuid"] = gpu.identity().get("uuid")  # NoGpu: None
        info["other_gpu_processes"] = gpu.other_processes()  # NoGpu: []
        if engine_died:  # its loop thread stopped (logged by transformers): the next point starts a new one
            info["engine_died"] = True
            self.close()
        return info

    def _load(self, backend, requests, point: ServingPoint, run_once):
        """The timed part: the load, inside pytest-benchmark's round, with the energy trace around it."""
        meter = self.target.energy_meter()
        holder: dict = {}

        def once():
            # in this event loop, or over --moeperf-client-workers processes (client_workers.run_point)
            load = run_point(backend, requests, point.load, seed=self.options.seed, timeout_s=self.options.timeout_s)
            if meter is None:
                holder["run"] = self._run(load)
                return
            from .energy_trace import EnergyTrace

            with EnergyTrace(meter) as trace:
                holder["run"] = self._run(load)
            holder["trace"] = trace.samples

        run_once(once)
        return holder["run"], holder.get("trace")

    def _energy(self, run, trace) -> dict:
        out = {"steady_energy_j": None, "avg_power_w": None, "j_per_output_token": None, "energy_window_s": None,
               "energy_unavailable": self.target.energy_unavailable()}
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

    def _describe(self, point: ServingPoint, backend, spec: WorkloadSpec) -> dict:
        """The keys every point carries, whatever its target (the target's own come after)."""
        desc = backend.describe()
        return {
            "model": point.model, "backend": self.target.name,
            "load_point": point.load.label, "load_mode": point.load.mode, "load_value": point.load.value,
            "input_len": str(point.input_len), "output_len": str(point.output_len),
            "context_tokens": point.input_len.a if point.input_len.kind == "fixed" else None,
            "new_tokens": point.output_len.a if point.output_len.kind == "fixed" else None,
            "requests_planned": spec.num_requests, "workload_seed": spec.seed, "ignore_eos": spec.ignore_eos,
            "engine": desc, "kv_blocks_total": desc.get("kv_blocks_total"), "kv_blocks_peak_used": desc.get("kv_blocks_peak_used"),
            "kv_used_fraction_peak": desc.get("kv_used_fraction_peak"), "kv_block_tokens": desc.get("kv_block_tokens"),
            "kv_cache_bytes": desc.get("kv_cache_bytes"), "saturation_rule": RULE,
            "records_path": self.options.records_path, "rounds": 1, "samples_kind": "per request",
        }

    def _write_records(self, point: ServingPoint, run) -> None:
        path = self.options.records_path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        run.write_jsonl(path, extra={"point_id": point.point_id, "written": time.time()})
