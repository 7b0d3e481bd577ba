"""A ServingBackend over transformers' continuous-batching engine (paged KV cache + scheduler).

``model.init_continuous_batching(...)`` gives a manager whose background thread runs the
scheduler; each request is added with ``add_request(streaming=True, record_timestamps=True)``
and its outputs come back on our event loop through ``register_result_handler`` (both public
since transformers 5.17). We write no scheduler of our own. What differs between 5.17 and 5.24
(the block-size field's name, the flash auto-switch, the cache's block accounting) is isolated
in ``cb_config_kwargs`` and, with every private knob, in model/compat.py; tests fail loudly if
any of them stops matching the installed transformers.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from pytest_moeperf.model import compat

from .backend import BackendError, Chunk, ServingRequest, StreamEnd
from .options import EngineOptions

def cb_config_kwargs(options: EngineOptions, fields: set[str]) -> dict:
    """ContinuousBatchingConfig keyword arguments for the installed transformers (``fields``: its
    dataclass fields). 5.17 calls the block size ``block_size``; later releases ``page_size``."""
    kw: dict = {}
    if options.block_size is not None:
        kw["page_size" if "page_size" in fields else "block_size"] = options.block_size
    if options.num_blocks is not None:
        kw["num_blocks"] = options.num_blocks
    if options.max_batch_tokens is not None:
        kw["max_batch_tokens"] = options.max_batch_tokens
    if options.max_memory_percent is not None:
        kw["max_memory_percent"] = options.max_memory_percent
    if options.cuda_graphs != "auto":
        kw["use_cuda_graph"] = options.cuda_graphs == "on"
    if options.compile_level:
        kw["default_compile_level"] = options.compile_level
    kw["allow_block_sharing"] = options.prefix_sharing
    if "auto_switch_to_flash" in fields:
        kw["auto_switch_to_flash"] = False  # the attention kernel stays the one the model was loaded with
    return kw


class ContinuousBatchingBackend:
    """The in-process engine. One manager per backend; ``close()`` frees its KV cache."""

    name = "transformers-cb"

    def __init__(self, model, options: EngineOptions = EngineOptions(), seed: int = 0):
        self.model = model
        self.options = options
        self.seed = seed
        self.manager = None
        self._restore_attn = None
        self._kv_peak_used = 0.0
        self.start_s: float | None = None

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        import torch
        from transformers import GenerationConfig

        compat.quiet_cancelled_request_warnings()  # a cancel (time limit, Ctrl-C) of a request without blocks
        cls = compat.cb_config_class()
        fields = {f.name for f in dataclasses.fields(cls)}
        self._restore_attn = compat.prepare_paged_attention(self.model, fields)
        # greedy, EOS ignored unless a request asks for it; pad id only silences a warning
        gen = GenerationConfig(do_sample=False, eos_token_id=-1, pad_token_id=0, max_new_tokens=16)
        cfg = cls(**cb_config_kwargs(self.options, fields))
        t0 = time.perf_counter()
        # no_grad, not inference_mode: 5.17's loop thread runs outside inference mode and would then
        # refuse to update the tensors warmup made; 5.2x runs its loop in the caller's mode
        with torch.no_grad():
            self.manager = self.model.init_continuous_batching(generation_config=gen, continuous_batching_config=cfg)
            self.manager.warmup()  # CUDA graph capture / compile happen here, not in the first request
            self.manager.start()
        self.start_s = time.perf_counter() - t0

    async def close(self) -> None:
        if self.manager is not None:
            self.manager.stop(block=True)
            self.manager = None
        if self._restore_attn is not None:
            self.model.set_attn_implementation(self._restore_attn)
            self._restore_attn = None
        _release_device_memory()

    def describe(self) -> dict:
        resolved = getattr(self.manager, "continuous_batching_config", None)
        out = {"backend": self.name, "engine_options": dataclasses.asdict(self.options),
               "attn_implementation": compat.attn_implementation(self.model),
               "engine_start_s": self.start_s}
        if resolved is not None:
            keep = ("page_size", "block_size", "num_blocks", "max_batch_tokens", "max_requests_per_batch",
                    "use_cuda_graph", "use_async_batching", "default_compile_level", "allow_block_sharing",
                    "max_memory_percent", "scheduler_type")
            out["engine_resolved"] = {k: _plain(getattr(resolved, k)) for k in keep if hasattr(resolved, k)}
        out.update(self.kv_state())
        out["kv_used_fraction_peak"] = self._kv_peak_used
        total = out.get("kv_blocks_total")
        out["kv_blocks_peak_used"] = round(self._kv_peak_used * total) if total else None
        return out

    def alive(self) -> bool:
        """False once the engine's loop thread has stopped (a fatal error inside it, e.g. OOM)."""
        return self.manager is not None and self.manager.is_running()

    def kv_state(self) -> dict:
        return compat.kv_cache_state(self.manager)

    def reset_kv_peak(self) -> None:
        self._kv_peak_used = 0.0

    def _sample_kv(self) -> None:
        try:  # read while the engine thread works: a torn read must not fail a request
            used = compat.kv_cache_state(self.manager)["kv_used_fraction"]
        except Exception:
            return
        if used is not None:
            self._kv_peak_used = max(self._kv_peak_used, used)

    def _eos(self):
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        return eos if eos is not None else getattr(self.model.config, "eos_token_id", -1)

    # --- one request ------------------------------------------------------------------------
    async def stream(self, request: ServingRequest):
        mgr = self.manager
        if mgr is None:
            raise BackendError("engine not started")
        import asyncio  # here, not at the top: the option parsers import this module at every pytest start

        queue: asyncio.Queue = asyncio.Queue()
        rid = request.request_id
        mgr.register_result_handler(rid, queue.put_nowait)
        added = mgr.add_request(list(request.prompt_ids), request_id=rid, max_new_tokens=request.max_new_tokens,
                                streaming=True, record_timestamps=True,
                                eos_token_id=-1 if request.ignore_eos else self._eos())
        if added is None:  # the manager refused it (stopping or crashed): it logged why
            raise BackendError(f"engine refused request {rid} (manager not accepting requests)")
        seen, finished = 0, False
        try:
            while True:
                out = await queue.get()
                if out.error is not None or int(out.status) == compat.failed_request_status():
                    finished = True
                    raise BackendError(f"engine failed request {rid}: {str(out.error).strip().splitlines()[0]}")
                n = len(out.generated_tokens)
                if n > seen:
                    self._sample_kv()  # the cache only grows while a request decodes: sample as it does
                    stamps = out.timestamps or ()
                    yield Chunk(n - seen, stamps[n - 1] if len(stamps) >= n else None)
                    seen = n
                if out.is_finished():
                    finished = True
                    start, end = out.lifespan
                    yield StreamEnd(len(out.prompt_ids), n, {
                        "engine_created_s": out.created_time, "engine_admitted_s": start if start > 0 else None,
                        "engine_finished_s": end if end > 0 else None})
                    return
        finally:
            if not finished:  # cancelled (time limit) or abandoned: free its KV blocks in the engine
                mgr.cancel_request(rid)


def _release_device_memory() -> None:
    """Give a stopped engine's KV cache and graph pools back to the driver. transformers 5.17's
    ``stop()`` does not (5.2x does), and the next engine sizes its cache from the driver's free
    memory: on the H200 a point after a crashed one saw 12 GB free instead of ~80 and failed."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
