"""Every private transformers knob the suite uses, in one place (as results/bench_api.py is for
pytest-benchmark); tests/test_compat.py fails loudly, naming the knob, when a release changes one.

- ``config._attn_implementation``: the attention kernel a loaded model runs (no public getter);
- ``CompileConfig._compile_all_devices``: generate() compiles the decode step on the CPU too;
- the continuous-batching engine's config class, request status and paged cache (not exported);
- its logger's name, to drop 5.17's warning about a cancelled request that holds no KV blocks.
Works with transformers 5.17 and 5.24; importing this module imports no transformers.
"""

from __future__ import annotations

import logging


def attn_implementation(model, default: str | None = None) -> str | None:
    """The attention implementation a loaded model runs (``config._attn_implementation``)."""
    return getattr(model.config, "_attn_implementation", default)


def compile_on_every_device():
    """A CompileConfig that makes generate() compile the static-cache decode step on every device.

    transformers auto-compiles only on cuda/xpu/tpu (GenerationMixin._valid_auto_compile_criteria);
    its CompileConfig flag ``_compile_all_devices`` opts the CPU in, so the static backend means
    static cache + torch.compile everywhere."""
    from transformers import CompileConfig

    config = CompileConfig()
    config._compile_all_devices = True
    return config


def cb_config_class():
    """transformers' ContinuousBatchingConfig (not exported at the top level in 5.17)."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    return ContinuousBatchingConfig


def prepare_paged_attention(model, fields: set[str]) -> str | None:
    """5.17 has no ``auto_switch_to_flash``: it probes for flash kernels (possibly on the hub) unless
    the implementation is already paged, so we name the paged variant of the loaded one ourselves.
    Returns the implementation to restore at close (None: nothing changed)."""
    impl = attn_implementation(model)
    if "auto_switch_to_flash" in fields or "paged|" in str(impl) or "flash" in str(impl):
        return None
    model.set_attn_implementation(f"paged|{impl}")
    return impl


def kv_cache_state(manager) -> dict:
    """Blocks, the fraction in use and bytes of the engine's paged cache (None where this
    transformers does not say, and for no manager). The manager's batch processor and its cache are
    internal to transformers: this is the one place that reads them. 5.17 counts free blocks; 5.2x
    allocates sectors of blocks per layer group and reports its free capacity as a fraction."""
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


def failed_request_status() -> int:
    """The status of a request the continuous-batching engine gave up on (RequestStatus is not exported)."""
    from transformers.generation.continuous_batching.requests import RequestStatus

    return int(RequestStatus.FAILED)


CB_LOGGER = "ContinuousBatchingLogger"  # transformers' continuous-batching logger (5.17 and 5.24)
CANCELLED_WITHOUT_BLOCKS = "attempted to free blocks for non-existent request_id"


class _CancelledWithoutBlocks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return CANCELLED_WITHOUT_BLOCKS not in record.getMessage()


def quiet_cancelled_request_warnings() -> None:
    """transformers 5.17 frees the KV blocks of every cancelled request and warns ``CacheAllocator N
    attempted to free blocks for non-existent request_id: ID`` for one that holds none (still queued,
    or finished with its last output not yet read): a serving point stopped at its time limit printed
    one such line per request in flight after its own one line. Nothing is wrong (5.24 does not warn):
    that message alone is dropped from the engine's logger; its other messages stay."""
    logger = logging.getLogger(CB_LOGGER)
    if not any(isinstance(f, _CancelledWithoutBlocks) for f in logger.filters):
        logger.addFilter(_CancelledWithoutBlocks())
