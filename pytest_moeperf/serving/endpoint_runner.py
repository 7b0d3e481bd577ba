"""The serving runner pointed at an OpenAI-compatible server instead of the in-process engine.

Same workload, load points, load generator, metrics, steady-state energy window, records and
extra_info layout as ServingRunner; what differs: no model is loaded here (the server holds it),
prompts come from the served model's tokenizer, energy only from the GPU named with
--moeperf-endpoint-gpu-index, and no local device memory is reported (the server is another
process).
"""

from __future__ import annotations

import os
import re

from .endpoint import EndpointConfig
from .runner import ServingPointFailed, ServingRunner
from .sweep import RULE
from .workload import PromptCache, WorkloadSpec


def endpoint_label(model: str) -> str:
    """The model's name in benchmark ids: ``http-`` + the last path part, so runs against a server
    never share a fullname (the gate's key) with the in-process engine's runs."""
    tail = model.rstrip("/").split("/")[-1] or "model"
    return "http-" + re.sub(r"[^A-Za-z0-9._-]+", "_", tail)


def load_tokenizer(config: EndpointConfig):
    """The served model's tokenizer: --moeperf-endpoint-tokenizer, else the model name when it is
    a local folder. Without one no exact-length prompt can be built: one line naming the option."""
    source = config.tokenizer or (config.model if os.path.isdir(config.model) else None)
    if source is None:
        raise ServingPointFailed("the served model's tokenizer is needed to build exact-length prompts: "
                                 "give --moeperf-endpoint-tokenizer PATH (a folder or hub id of the model's tokenizer)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ServingPointFailed(f"--moeperf-endpoint-tokenizer: cannot load {source}: "
                                 f"{(str(exc).strip().splitlines() or [''])[0]}") from None


class FormsPromptCache(PromptCache):
    """PromptCache that also keeps each prompt's text and chat-message forms (chat_prompts.py),
    computed when the workload is built, outside the timed run."""

    def __init__(self, tokenizer, forms: dict):
        super().__init__(tokenizer)
        self.forms = forms

    def ids(self, target: int, seed: int) -> tuple[int, ...]:
        ids = super().ids(target, seed)
        if ids not in self.forms:
            from .backend import ServingRequest
            from .chat_prompts import attach_prompts

            (req,) = attach_prompts([ServingRequest("form", ids, 1)], self.tokenizer)
            self.forms[ids] = (req.prompt_text, req.messages)
        return ids


class EndpointRunner(ServingRunner):
    def __init__(self, session, options, endpoint: EndpointConfig):
        super().__init__(session, options)
        self.endpoint = endpoint
        self._meter = None
        self._energy_reason = None
        self._loop = None

    def _run(self, coro):
        # one event loop for the backend's life: its HTTP connections belong to the loop they were
        # opened in (ServingRunner's asyncio.run per call would orphan them)
        import asyncio

        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        super().close()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.close()

    def _ensure_backend(self, point):
        if self.backend is not None:
            return self.backend
        from .openai_backend import OpenAIBackend

        tokenizer = load_tokenizer(self.endpoint)
        forms: dict = {}
        prompts = self._prompts.setdefault(point.model, FormsPromptCache(tokenizer, forms))
        self._routing[point.model] = None  # the router is inside the server
        backend = OpenAIBackend(self.endpoint, tokenizer=tokenizer, forms=forms)
        try:
            self._run(backend.start())
        except Exception as exc:  # BackendError: one line (unreachable, wrong model, no streaming)
            raise ServingPointFailed(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from None
        self.backend = backend
        self._warm_up(backend, point, prompts)
        return backend

    # --- what differs from the in-process engine ---------------------------------------------
    def _local_cuda(self) -> bool:
        return False  # the server is another process: this one's allocator says nothing about it

    def _gpu(self):
        self._energy_meter()
        return self._meter.device if self._meter is not None else None

    def _energy_meter(self):
        if self._meter is None and self._energy_reason is None:
            if self.endpoint.energy_gpu is None:
                self._energy_reason = ("server's GPU not named (--moeperf-endpoint-gpu-index N when it is on "
                                       "this machine)")
            else:
                from pytest_moeperf.measure.energy import EnergyMeter, NvmlDevice

                try:
                    self._meter = EnergyMeter(NvmlDevice(index=self.endpoint.energy_gpu))
                except Exception as exc:  # NVML missing, bad index, counter unsupported: one line
                    self._energy_reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return self._meter

    def _energy(self, run, trace) -> dict:
        out = super()._energy(run, trace)
        if trace is None and self._energy_reason:
            out["energy_unavailable"] = self._energy_reason
        return out

    def _write_records(self, point, run) -> None:
        super()._write_records(point, run)
        # this point's mismatches (the backend's counters run since its start, warm-up included)
        mism = [r.info.get("mismatch", {}) for r in run.records if r.ok]
        self._mismatched = {"prompt_tokens_mismatched_requests": sum("prompt_tokens" in m for m in mism),
                            "output_tokens_mismatched_requests": sum("output_tokens" in m for m in mism)}
        if self._mismatched["prompt_tokens_mismatched_requests"]:
            import warnings

            example = next(m["prompt_tokens"] for m in mism if "prompt_tokens" in m)
            warnings.warn(f"{point.point_id}: the server counted a different prompt length than asked in "
                          f"{self._mismatched['prompt_tokens_mismatched_requests']} request(s) (e.g. asked "
                          f"{example['asked']}, served {example['served']}): its chat template or tokenizer differs "
                          "from --moeperf-endpoint-tokenizer's; try --moeperf-endpoint-api completions", stacklevel=2)

    def _describe(self, point, backend, n: int, spec: WorkloadSpec) -> dict:
        desc = backend.describe()
        return {**getattr(self, "_mismatched", {}),
            "model": point.model, "architecture": None, "weights": "server", "dtype": None,
            "backend": "openai-endpoint", "device_name": f"server at {self.endpoint.base_url}",
            "endpoint": desc["endpoint"], "server_model": desc.get("server_model"),
            "server_version": desc.get("server_version"), "energy_gpu": self.endpoint.energy_gpu,
            "load_point": point.load.label, "load_mode": point.load.mode, "load_value": point.load.value,
            "input_len": str(point.input_len), "output_len": str(point.output_len),
            "context_tokens": point.input_len.a if point.input_len.kind == "fixed" else None,
            "new_tokens": point.output_len.a if point.output_len.kind == "fixed" else None,
            "requests_planned": n, "workload_seed": spec.seed, "ignore_eos": spec.ignore_eos,
            "params_total": None, "params_active": None, "cuda_graphs": None, "engine": desc,
            "kv_blocks_total": None, "kv_blocks_peak_used": None, "kv_used_fraction_peak": None,
            "kv_block_tokens": None, "kv_cache_bytes": None, "engine_sizing": None, "saturation_rule": RULE,
            "records_path": self.options.records_path, "rounds": 1, "samples_kind": "per request",
        }
