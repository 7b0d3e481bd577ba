"""One single-request case's result as a frozen value (:class:`CaseResult`), and the one function
that writes it as pytest-benchmark's ``extra_info`` (:func:`to_extra_info`). No torch here:
CaseRunner.result() reads the device once; everything below is arithmetic on what it read.

The session adds what the case's runner does not know (the paper's 1-token TTFT, the energy
split, the roofline, routing, the GPU's processes: measure/session.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_moeperf.device.energy import EnergyWindow
from pytest_moeperf.device.gpu_state import GpuState
from pytest_moeperf.device.gpu_state import summarize as summarize_gpu_states
from pytest_moeperf.measure.round_gaps import summarize as summarize_round_gaps
from pytest_moeperf.measure.token_clock import RoundTiming
from pytest_moeperf.metrics import derived
from pytest_moeperf.metrics.stats import ci95_mean, cv, median, percentile


@dataclass(frozen=True)
class CaseResult:
    # what ran
    model: str
    architecture: str
    weights: str
    checkpoint: str | None
    dtype: str
    backend: str
    experts: str | None
    device_name: str
    context_tokens: int
    context_overhead_tokens: int
    context_mode: str
    batch_size: int
    decoding: str
    params_total: int
    params_active: int
    weights_bytes: int
    # the rounds and how they were run
    rounds: tuple[RoundTiming, ...]
    warmup_rounds: int
    warmup_s: float
    warmup_calls: int
    gpu_states: tuple[GpuState, ...]
    host_gc: dict
    token_clock: str
    first_call_s: float | None
    # memory
    peak_allocated_bytes: int | None
    peak_reserved_bytes: int | None
    peak_rss_bytes: int | None
    pre_decode_allocated_bytes: int | None
    kv_cache_bytes: int | None
    kv_cache_measured_bytes: int | None
    kv_cache_layout: dict
    # energy: the usable windows, or why there are none
    windows: tuple[EnergyWindow, ...]
    energy_unavailable: str | None
    idle_power_w: float | None
    # the static backend's cache, what the model produced (measure/outputs_check.py)
    static_cache: str | None
    output: dict | None


def valid_windows(windows) -> list[EnergyWindow]:
    """Windows the energy figures use: with rounds, tokens and a positive counter delta."""
    return [w for w in windows if w.rounds and w.tokens and w.energy_j > 0]


def window_samples(windows) -> dict[str, list[float]]:
    """The per-window energy figures (the samples the gate tests and the medians reported)."""
    return {"energy_j": [derived.energy_per_round_j(w.energy_j, w.rounds) for w in windows],
            "tokens_per_j": [derived.tokens_per_j(w.tokens, w.energy_j) for w in windows],
            "j_per_1k_tokens": [derived.j_per_1k_tokens(w.tokens, w.energy_j) for w in windows]}


def energy_summary(windows, reason: str | None, idle_power_w: float | None) -> dict:
    if reason is not None or not windows:
        return {"energy_j": None, "tokens_per_j": None, "j_per_1k_tokens": None,
                "energy_unavailable": reason or "no energy meter", "energy_windows": 0,
                "energy_window_s": None, "energy_j_cv": None, "energy_j_ci95": None, "avg_power_w": None,
                "idle_power_w": idle_power_w, "energy_idle_subtracted_j": None}
    samples = window_samples(windows)
    per_round = samples["energy_j"]
    return {
        "energy_j": median(per_round),
        "tokens_per_j": median(samples["tokens_per_j"]),
        "j_per_1k_tokens": median(samples["j_per_1k_tokens"]),
        "energy_unavailable": None,
        "energy_windows": len(windows),
        "energy_window_s": [round(w.duration_s, 3) for w in windows],
        "energy_j_cv": cv(per_round),
        "energy_j_ci95": ci95_mean(per_round),
        "avg_power_w": median([w.power_w for w in windows]),
        "idle_power_w": idle_power_w,
        # gross minus idle board power over the same time: reported under its own name only
        "energy_idle_subtracted_j": median([(w.energy_j - idle_power_w * w.duration_s) / w.rounds
                                            for w in windows]) if idle_power_w is not None else None,
        "energy_method": "NVML total-energy counter over windows of consecutive rounds; gross board energy",
    }


def to_extra_info(r: CaseResult) -> dict:
    """The case's extra_info: every metric from its rounds, memory and energy windows (schema.py names them)."""
    rounds = r.rounds
    ttft = [x.ttft_ms for x in rounds]
    tpot = [x.tpot_ms for x in rounds if x.tpot_ms is not None]
    e2e = [x.e2e_ms for x in rounds]
    itl = [g for x in rounds for g in x.itl_ms]
    dec = [x.decode_tokens_per_s for x in rounds if x.decode_tokens_per_s is not None]
    e2e_tps = [x.e2e_tokens_per_s for x in rounds]
    energy = energy_summary(r.windows, r.energy_unavailable, r.idle_power_w)
    ttft_med, dec_med = median(ttft), median(dec)
    peak_alloc, rss = r.peak_allocated_bytes, r.peak_rss_bytes
    return {
        "model": r.model, "architecture": r.architecture, "weights": r.weights, "checkpoint": r.checkpoint,
        "dtype": r.dtype, "backend": r.backend, "experts": r.experts, "device_name": r.device_name,
        "context_tokens": r.context_tokens, "context_overhead_tokens": r.context_overhead_tokens,
        "context_mode": r.context_mode, "new_tokens": rounds[0].new_tokens if rounds else None,
        "batch_size": r.batch_size, "decoding": r.decoding,
        "params_total": r.params_total, "params_active": r.params_active,
        "rounds": len(rounds), "warmup_rounds": r.warmup_rounds, "warmup_s": r.warmup_s,
        "warmup_calls": r.warmup_calls, "gpu_state": summarize_gpu_states(list(r.gpu_states)),
        "host_gc": r.host_gc, "round_gaps": summarize_round_gaps(list(rounds)),
        "percentile_method": "numpy linear (type 7)", "token_clock": r.token_clock, "first_call_s": r.first_call_s,
        "ttft_ms": ttft_med, "ttft_ms_p95": percentile(ttft, 95), "tpot_ms": median(tpot),
        "itl_ms_p50": percentile(itl, 50), "itl_ms_p95": percentile(itl, 95),
        "decode_tokens_per_s": dec_med, "e2e_ms_p50": median(e2e), "e2e_ms_p95": percentile(e2e, 95),
        "e2e_tokens_per_s": median(e2e_tps), "e2e_ms_cv": cv(e2e),
        "weights_bytes": r.weights_bytes, "peak_allocated_bytes": peak_alloc,
        "peak_reserved_bytes": r.peak_reserved_bytes, "peak_rss_bytes": rss,
        "pre_decode_allocated_bytes": r.pre_decode_allocated_bytes, "kv_cache_bytes": r.kv_cache_bytes,
        "kv_cache_measured_bytes": r.kv_cache_measured_bytes, "kv_cache_layout": dict(r.kv_cache_layout),
        **energy,
        **derived.efficiency({"params_active": r.params_active, "decode_tokens_per_s": dec_med,
                              "ttft_ms": ttft_med, "tokens_per_j": energy["tokens_per_j"],
                              "peak_allocated_bytes": peak_alloc, "peak_rss_bytes": rss}),
        "throttled_rounds": sum(x.throttled for x in rounds),
        "power_capped_rounds": sum(x.power_capped for x in rounds),
        # the paper's own definitions, under names that say so
        "paper_e2e_tokens_per_s": median(e2e_tps),
        "paper_kv_estimate_bytes": derived.paper_kv_estimate_bytes(peak_alloc, r.pre_decode_allocated_bytes),
        "paper_peak_vram_mib": derived.paper_peak_vram_mib(peak_alloc),
        "samples": {
            "ttft_ms": ttft, "tpot_ms": tpot, "e2e_ms": e2e, "decode_tokens_per_s": dec,
            "e2e_tokens_per_s": e2e_tps, "itl_ms_p50": [median(x.itl_ms) for x in rounds if x.itl_ms],
            **window_samples(r.windows),
            "throttled": [x.throttled for x in rounds],
        },
        "static_cache": r.static_cache,
        "output": r.output,
    }
