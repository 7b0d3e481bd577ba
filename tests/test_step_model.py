"""The per-step model (metrics/step_model.py): bytes per decode step against hand counts from the tiny
presets' configs, the parameter split against transformers' own modules, and properties in the batch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.metrics.step_model import (decompose, energy_floor_j, expected_distinct_experts, floor_ms,
                                               shape_of, step_bytes)
from pytest_moeperf.model.presets import PRESETS, get_preset


def _shape(name):
    return shape_of(get_preset(name).make_config())


def test_tiny_moe_bytes_by_hand():
    # tiny-moe: hidden 64, 2 layers (sliding 32, full), 4 heads / 2 KV heads of 16, 4 experts top-2,
    # intermediate 64, vocab 512, untied LM head
    attention = 2 * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + (64 + 32 + 32 + 64) + 4)  # q k v o, biases, sinks
    shared = 2 * (2 * 64 + 4 * 64 + 4) + 64 + 512 * 64  # 2 norms + router per layer, final norm, LM head
    expert = 64 * 128 + 128 + 64 * 64 + 64  # gate_up (+bias), down (+bias)
    batch, ctx = 3, 100
    distinct = 4 * (1 - (1 - 2 / 4) ** 3)  # 3.5
    kv = batch * (100 + 32) * (2 * 2 * 16)  # full layer: 100 tokens; sliding layer: the 32-token window
    b = step_bytes(_shape("tiny-moe"), batch, ctx, 2)
    assert b.distinct_experts == pytest.approx(3.5) == distinct
    assert b.attention == 2 * attention == 49936
    assert b.shared == 2 * (shared + batch * 64)  # plus one embedding row per sequence
    assert b.experts == pytest.approx(2 * 2 * distinct * expert)
    assert b.kv == 2 * kv == 50688
    assert b.total == pytest.approx(342944)


def test_tiny_dense_bytes_by_hand():
    # tiny-dense (Qwen3 class): hidden 64, 2 full layers, 4 heads / 2 KV heads of 16, intermediate 192
    attention = 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 2 * 16)  # q k v o, q_norm, k_norm
    shared = 2 * (2 * 64 + 3 * 64 * 192) + 64 + 512 * 64
    b = step_bytes(_shape("tiny-dense"), 3, 100, 2)
    assert (b.attention, b.experts, b.distinct_experts) == (2 * attention, 0, 0)
    assert b.shared == 2 * (shared + 3 * 64)
    assert b.kv == 2 * 3 * 2 * 100 * (2 * 2 * 16) == 76800
    assert b.total == 340096


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"gpt-oss-120b"}))  # 120b: 20b's code path, 6 s of meta build
def test_parameter_split_matches_the_model(name):
    """The config-derived split sums to the parameters transformers builds (meta device, no memory)."""
    from pytest_moeperf.model.presets import count_params

    shape, counts = _shape(name), count_params(name)
    assert shape.total_params == counts.total
    # at batch 1 a MoE step reads exactly the active parameters (k experts) plus one embedding row
    b = step_bytes(shape, 1, 0, 1, distinct_experts=shape.top_k or None)
    assert b.total == counts.active + shape.hidden


def test_gpt_oss_kv_honours_sliding_layers():
    shape = _shape("gpt-oss-20b")
    assert (shape.full_layers, shape.sliding_layers, shape.sliding_window) == (12, 12, 128)
    kv = step_bytes(shape, 1, 2048, 2).kv
    assert kv == (12 * 2048 + 12 * 128) * 2 * 8 * 64 * 2


def test_measured_distinct_experts_override_the_formula():
    shape = _shape("gpt-oss-20b")
    assert step_bytes(shape, 16, 2048, 2, distinct_experts=25.0).distinct_experts == 25.0
    assert step_bytes(shape, 16, 2048, 2).distinct_experts == pytest.approx(32 * (1 - (28 / 32) ** 16))


@given(e=st.integers(1, 256), data=st.data(), b=st.floats(1, 4096))
@settings(max_examples=200, deadline=None)
def test_distinct_experts_between_k_and_e(e, data, b):
    k = data.draw(st.integers(1, e))
    d = expected_distinct_experts(e, k, b)
    assert k - 1e-9 <= d <= e + 1e-9
    assert expected_distinct_experts(e, k, b + 1) >= d - 1e-9
    assert expected_distinct_experts(e, k, 1) == pytest.approx(k)


@given(name=st.sampled_from(["tiny-moe", "tiny-dense", "gpt-oss-20b", "qwen3-32b"]), b=st.integers(1, 512),
       ctx=st.integers(0, 8192))
@settings(max_examples=100, deadline=None)
def test_step_bytes_monotone(name, b, ctx):
    shape = _shape(name)
    one, more = step_bytes(shape, b, ctx, 2), step_bytes(shape, b + 1, ctx, 2)
    assert more.total >= one.total and more.kv >= one.kv and more.experts >= one.experts
    assert step_bytes(shape, b, ctx + 1, 2).kv >= one.kv
    # the bytes per sequence never grow with the batch: the weights are shared
    assert more.total / (b + 1) <= one.total / b + 1e-6
    assert shape.n_experts == 0 or one.experts <= shape.layers * shape.n_experts * shape.expert_params * 2


def test_floors_and_decomposition():
    assert floor_ms(4e9, 4e12) == pytest.approx(1.0)
    assert floor_ms(4e9, None) is None
    assert energy_floor_j(1.0, 120.0, 4) == pytest.approx(0.03)
    assert energy_floor_j(None, 120.0, 4) is None
    parts = decompose(10.0, {"kv": 1.0, "experts": 2.0})
    assert parts == {"kv": 1.0, "experts": 2.0, "overhead": 7.0}


def test_bad_batch_is_refused():
    with pytest.raises(ValueError, match="batch must be > 0"):
        step_bytes(_shape("tiny-dense"), 0, 10, 2)
