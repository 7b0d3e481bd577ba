"""An OpenAI-compatible server as the target of a serving run, instead of the in-process engine.

The point runner (serving/runner.py) is the same: workload, load points, load generator, metrics,
steady-state energy window, records and the result; what differs lives here: no model is loaded (the server holds it),
prompts come from the served model's tokenizer, energy only from the GPU named with
--moeperf-endpoint-gpu-index, and no local device memory is reported (the server is another
process).
"""

from __future__ import annotations

import os
import re

from pytest_moeperf.device.gpu import NoGpu

from .endpoint import EndpointConfig
from .runner import ServingPointFailed
from .workload import PromptCache


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


class EndpointTarget:
    """An OpenAI-compatible server as a serving target (one model: the server's)."""

    name = "openai-endpoint"
    local_cuda = False  # the server is another process: this one's allocator says nothing about it

    def __init__(self, options, endpoint: EndpointConfig):
        self.options = options
        self.endpoint = endpoint
        self._prompts: FormsPromptCache | None = None
        self._meter = None
        self._energy_reason = None
        self._start_error: str | None = None  # the server did not answer: said once, not probed per point

    def backend_key(self, point):
        return "server"  # one server, one backend for every point

    def prompts(self, point) -> FormsPromptCache:
        if self._prompts is None:
            self._prompts = FormsPromptCache(load_tokenizer(self.endpoint), {})
        return self._prompts

    def new_backend(self, point):
        if self._start_error is not None:  # the readiness wait ran once this session; it is not repeated
            raise ServingPointFailed(self._start_error)
        from .openai_backend import OpenAIBackend

        prompts = self.prompts(point)
        return OpenAIBackend(self.endpoint, tokenizer=prompts.tokenizer, forms=prompts.forms), "server"

    def start(self, backend, run) -> None:
        try:
            run(backend.start())
        except Exception as exc:  # BackendError: one line (unreachable, wrong model, no streaming)
            self._start_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServingPointFailed(self._start_error) from None

    def gpu(self):
        """The server's GPU when it is named and NVML reads it, else NoGpu."""
        self.energy_meter()
        return self._meter.device if self._meter is not None else NoGpu(self._energy_reason or "no GPU")

    def energy_meter(self):
        if self._meter is None and self._energy_reason is None:
            if self.endpoint.energy_gpu is None:
                self._energy_reason = ("server's GPU not named (--moeperf-endpoint-gpu-index N when it is on "
                                       "this machine)")
            else:
                from pytest_moeperf.device.energy import EnergyMeter
                from pytest_moeperf.device.nvml import NvmlDevice

                try:
                    self._meter = EnergyMeter(NvmlDevice(index=self.endpoint.energy_gpu))
                except Exception as exc:  # NVML missing, bad index, counter unsupported: one line
                    self._energy_reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return self._meter

    def energy_unavailable(self) -> str | None:
        self.energy_meter()
        return self._energy_reason

    def describe(self, point, backend, run, info: dict) -> dict:
        desc = backend.describe()
        return {**self._mismatches(point, run),
                "architecture": None, "weights": "server", "dtype": None,
                "device_name": f"server at {self.endpoint.base_url}", "endpoint": desc["endpoint"],
                "server_model": desc.get("server_model"), "server_version": desc.get("server_version"),
                "energy_gpu": self.endpoint.energy_gpu, "params_total": None, "params_active": None,
                "cuda_graphs": None, "engine_sizing": None, "routing_vs_batch": None,  # the router is inside the server
                "distinct_experts_at_load": None}

    def _mismatches(self, point, run) -> dict:
        """This point's requests whose token counts the server reported differently (its counters run
        since its start, warm-up included); a warning names a prompt-length mismatch."""
        mism = [r.info.get("mismatch", {}) for r in run.records if r.ok]
        out = {"prompt_tokens_mismatched_requests": sum("prompt_tokens" in m for m in mism),
               "output_tokens_mismatched_requests": sum("output_tokens" in m for m in mism)}
        if out["prompt_tokens_mismatched_requests"]:
            import warnings

            example = next(m["prompt_tokens"] for m in mism if "prompt_tokens" in m)
            warnings.warn(f"{point.point_id}: the server counted a different prompt length than asked in "
                          f"{out['prompt_tokens_mismatched_requests']} request(s) (e.g. asked "
                          f"{example['asked']}, served {example['served']}): its chat template or tokenizer differs "
                          "from --moeperf-endpoint-tokenizer's; try --moeperf-endpoint-api completions", stacklevel=2)
        return out

    def after_failure(self) -> None:
        pass
