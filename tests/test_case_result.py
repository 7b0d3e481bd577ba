"""measure/case_result.py: a case's frozen result and the one function that writes its extra_info,
on hand-made rounds and energy windows (no model)."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_moeperf.device.energy import EnergyWindow
from pytest_moeperf.measure.case_result import CaseResult, to_extra_info
from pytest_moeperf.measure.token_clock import RoundTiming
from pytest_moeperf.metrics import schema

ROUNDS = (RoundTiming(e2e_ms=40.0, token_ms=(10.0, 20.0, 30.0, 40.0), batch_size=1),
          RoundTiming(e2e_ms=50.0, token_ms=(20.0, 30.0, 40.0, 50.0), batch_size=1, throttled=True),
          RoundTiming(e2e_ms=46.0, token_ms=(16.0, 26.0, 36.0, 46.0), batch_size=1))


def _result(**over) -> CaseResult:
    base = dict(model="tiny-dense", architecture="dense", weights="random", checkpoint=None, dtype="fp32",
                backend="eager", experts=None, device_name="cpu (test)", context_tokens=64,
                context_overhead_tokens=9, context_mode="exact", batch_size=1, decoding="greedy",
                params_total=2_000_000, params_active=2_000_000, weights_bytes=8_000_000, rounds=ROUNDS,
                warmup_rounds=0, warmup_s=0.0, warmup_calls=0, gpu_states=(), host_gc={"policy": "on"},
                token_clock="sync", first_call_s=0.5, peak_allocated_bytes=None, peak_reserved_bytes=None,
                peak_rss_bytes=1_000_000_000, pre_decode_allocated_bytes=None, kv_cache_bytes=4096,
                kv_cache_measured_bytes=None, kv_cache_layout={"full_layers": 2}, windows=(),
                energy_unavailable="no GPU", idle_power_w=None, static_cache=None, output=None)
    return CaseResult(**{**base, **over})


def test_the_round_metrics_come_from_the_rounds():
    info = to_extra_info(_result())
    assert info["ttft_ms"] == 16.0 and info["tpot_ms"] == 10.0 and info["e2e_ms_p50"] == 46.0
    assert info["samples"]["ttft_ms"] == [10.0, 20.0, 16.0] and info["throttled_rounds"] == 1
    assert info["new_tokens"] == 4 and info["rounds"] == 3 and info["gpu_state"] is None
    assert info["energy_j"] is None and info["energy_unavailable"] == "no GPU" and info["energy_windows"] == 0
    case_metrics = {m.key for m in schema.METRICS if m.scope == "case"}
    assert case_metrics - set(info) == set(), "a case metric of the registry is missing from extra_info"


def test_energy_comes_from_the_usable_windows_only():
    windows = (EnergyWindow(6.0, 300.0, 3, 12), EnergyWindow(5.0, 250.0, 2, 8))
    info = to_extra_info(_result(windows=windows, energy_unavailable=None, idle_power_w=20.0))
    assert info["samples"]["energy_j"] == [100.0, 125.0] and info["energy_j"] == pytest.approx(112.5)
    assert info["avg_power_w"] == 50.0 and info["energy_windows"] == 2 and info["energy_unavailable"] is None
    assert info["energy_idle_subtracted_j"] == pytest.approx(((300 - 120) / 3 + (250 - 100) / 2) / 2)


def test_the_result_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _result().model = "other"
