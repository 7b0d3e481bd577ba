"""A ServingBackend over transformers' continuous-batching engine (paged KV cache + scheduler).

``model.init_continuous_batching(...)`` gives a manager whose background thread runs the
scheduler; each request is added with ``add_request(streaming=True, record_timestamps=True)``
and its outputs come back on our event loop through ``register_result_handler`` (both public
since transformers 5.17). We write no scheduler of our own. What differs between 5.17 and 5.24
(the block-size field's name, the flash auto-switch, the cache's block accounting) is isolated
in ``cb_config_kwargs``, ``_prepare_attention`` and ``kv_cache_state``; tests fail loudly if
any of them stops matching the installed transformers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from .backend import BackendError, Chunk, ServingRequest, StreamEnd

CUDA_GRAPHS = ("auto", "on", "off")


@dataclass(frozen=True)
class EngineOptions:
    """The engine's own settings (recorded in extra_info). None = transformers decides."""

    block_size: int | None = None  # tokens per KV block ("page_size" since transformers 5.17's rename)
    num_blocks: int | None = None  # KV blocks; None: sized from free device memory
    max_batch_tokens: int | None = None  # tokens per forward step; None: inferred
    cuda_graphs: str = "auto"  # auto | on | off
    compile_level: int = 0  # transformers' default_compile_level: 0 (none) .. 3
    prefix_sharing: bool = False  # prefix caching; off so every request prefills its whole prompt
    max_memory_percent: float | None = None

    def __post_init__(self):
        if self.cuda_graphs not in CUDA_GRAPHS:
            raise ValueError(f"cuda graphs: {self.cuda_graphs!r}; use one of {', '.join(CUDA_GRAPHS)}")
        if not 0 <= self.compile_level <= 3:
            raise ValueError(f"compile level {self.compile_level} must be 0..3")


def _cb_config_class():
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    return ContinuousBatchingConfig


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


def _prepare_attention(model, fields: set[str]) -> str | None:
    """5.17 has no ``auto_switch_to_flash``: it probes for flash kernels (possibly on the hub) unless
    the implementation is already paged, so we name the paged variant of the loaded one ourselves.
    Returns the implementation to restore at close (None: nothing changed)."""
    impl = model.config._attn_implementation
    if "auto_switch_to_flash" in fields or "paged|" in str(impl) or "flash" in str(impl):
        return None
    model.set_attn_implementation(f"paged|{impl}")
    return impl


def kv_cache_state(manager) -> dict:
    """Blocks, the fraction in use and bytes of the engine's paged cache (None where this
    transformers does not say). The cache object is internal to transformers: this is the one
    place that reads it. 5.17 counts free blocks; 5.2x allocates sectors of blocks per layer
    group and reports its free capacity as a fraction."""
    bp = getattr(manager, "batch_processor", None)
    cache = getattr(bp, "cache", None)
    resolved = getattr(manager, "continuous_batching_config", None)
    block_tokens = getattr(resolved, "page_size", None) or getattr(resolved, "block_size", None)
    out = {"kv_blocks_total": None, "kv_used_fraction": None, "kv_block_tokens": block_tokens, "kv_cache_bytes": None}
    if cache is None:
        return out
    total = getattr(cache, "num_blocks", None)
    out["kv_blocks_total"] = total
    if hasattr(cache, "get_num_free_blocks") and total:  # 5.17
        out["kv_used_fraction"] = 1.0 - cache.get_num_free_blocks() / total
    elif hasattr(cache, "compute_free_capacity"):  # 5.2x
        out["kv_used_fraction"] = 1.0 - float(cache.compute_free_capacity(relative=True))
    if getattr(cache, "cache_tensor", None) is not None:
        out["kv_cache_bytes"] = cache.cache_tensor.numel() * cache.cache_tensor.element_size()
    elif getattr(cache, "key_cache", None) is not None:
        out["kv_cache_bytes"] = sum(t.numel() * t.element_size() for t in list(cache.key_cache) + list(cache.value_cache))
    return out


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

        cls = _cb_config_class()
        fields = {f.name for f in dataclasses.fields(cls)}
        self._restore_attn = _prepare_attention(self.model, fields)
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
               "attn_implementation": self.model.config._attn_implementation,
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
        return kv_cache_state(self.manager) if self.manager is not None else kv_cache_state(None)

    def reset_kv_peak(self) -> None:
        self._kv_peak_used = 0.0

    def _sample_kv(self) -> None:
        try:  # read while the engine thread works: a torn read must not fail a request
            used = kv_cache_state(self.manager)["kv_used_fraction"]
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
                if out.error is not None or int(out.status) == _failed_status():
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


def _failed_status() -> int:
    from transformers.generation.continuous_batching.requests import RequestStatus

    return int(RequestStatus.FAILED)


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
