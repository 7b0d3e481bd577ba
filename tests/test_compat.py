"""model/compat.py: each private transformers knob the suite relies on, checked against the installed
transformers. A failure here names the knob a new release changed (as test_bench_api.py does for
pytest-benchmark's one private access); tests/test_serving_engine.py runs the engine knobs for real."""

from __future__ import annotations

import dataclasses
import inspect
from types import SimpleNamespace

import pytest

from pytest_moeperf.model import compat

pytest.importorskip("transformers")


def test_the_attention_implementation_is_still_on_the_config():
    from pytest_moeperf.model.presets import get_preset

    config = get_preset("tiny-dense").make_config()
    assert hasattr(config, "_attn_implementation"), "transformers moved config._attn_implementation"
    assert compat.attn_implementation(SimpleNamespace(config=config)) == config._attn_implementation
    assert compat.attn_implementation(SimpleNamespace(config=object()), "eager") == "eager"


def test_compile_config_still_opts_every_device_in():
    from transformers.generation.utils import GenerationMixin

    config = compat.compile_on_every_device()
    assert config._compile_all_devices is True
    source = inspect.getsource(GenerationMixin._valid_auto_compile_criteria)
    assert "_compile_all_devices" in source, \
        "generate() no longer reads CompileConfig._compile_all_devices: the static backend would run eager on the CPU"


def test_the_engine_config_and_request_status_are_where_they_were():
    from transformers.generation.continuous_batching.requests import RequestStatus

    fields = {f.name for f in dataclasses.fields(compat.cb_config_class())}
    assert fields & {"page_size", "block_size"}, "ContinuousBatchingConfig has no KV block size field"
    assert compat.failed_request_status() == int(RequestStatus.FAILED)
    assert len({int(s) for s in RequestStatus}) == len(RequestStatus)  # FAILED is told apart from the others


def test_the_paged_cache_still_has_what_kv_cache_state_reads():
    from transformers.generation.continuous_batching import ContinuousBatchingManager
    from transformers.generation.continuous_batching.cache import PagedAttentionCache

    assert "self.batch_processor" in inspect.getsource(ContinuousBatchingManager), \
        "the continuous-batching manager no longer keeps its batch_processor"
    cache_init = inspect.getsource(PagedAttentionCache.__init__)
    assert "self.num_blocks" in cache_init, "PagedAttentionCache no longer sets num_blocks"
    assert hasattr(PagedAttentionCache, "get_num_free_blocks") or hasattr(PagedAttentionCache, "compute_free_capacity"), \
        "PagedAttentionCache says neither its free blocks (5.17) nor its free capacity (5.2x)"
    assert "self.cache_tensor" in cache_init or "self.key_cache" in cache_init, \
        "PagedAttentionCache keeps its tensors under a new name: kv_cache_bytes would be None"
    assert compat.kv_cache_state(None) == {"kv_blocks_total": None, "kv_used_fraction": None,
                                           "kv_block_tokens": None, "kv_cache_bytes": None}


class _Model:
    def __init__(self, impl):
        self.config = SimpleNamespace(_attn_implementation=impl)

    def set_attn_implementation(self, impl):
        self.config._attn_implementation = impl


@pytest.mark.parametrize(("impl", "fields", "after", "restore"), [
    ("sdpa", set(), "paged|sdpa", "sdpa"),  # 5.17: name the paged variant ourselves
    ("sdpa", {"auto_switch_to_flash"}, "sdpa", None),  # 5.2x: the engine keeps the kernel when told
    ("paged|eager", set(), "paged|eager", None),
])
def test_paged_attention_is_named_only_where_transformers_would_probe_for_flash(impl, fields, after, restore):
    model = _Model(impl)
    assert compat.prepare_paged_attention(model, fields) == restore
    assert model.config._attn_implementation == after


def test_only_the_warning_for_a_cancelled_request_without_blocks_is_dropped():
    """Issue 27 item 6 run again: a serving point at its time limit printed, on transformers 5.17, one
    'CacheAllocator 0 attempted to free blocks for non-existent request_id: cc4-430' warning per request
    in flight after its one line (docs/evidence/faults-reproducers-2026-12-02.md, run 6b)."""
    import logging

    compat.quiet_cancelled_request_warnings()
    compat.quiet_cancelled_request_warnings()  # once per engine start: one filter, not one per start
    logger = logging.getLogger(compat.CB_LOGGER)
    assert sum(isinstance(f, compat._CancelledWithoutBlocks) for f in logger.filters) == 1

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord(compat.CB_LOGGER, logging.WARNING, __file__, 1, msg, None, None)

    assert not logger.filter(record("CacheAllocator 0 attempted to free blocks for non-existent request_id: cc4-430"))
    assert logger.filter(record("Outside safety margin, breaking out of scheduling loop."))
