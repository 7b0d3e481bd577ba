"""Every figure derived from measured ones, once: pure functions, no imports beyond the standard library
and the metrics layer's own step_model.py (the per-step bytes model).

The single-GPU measurement (measure.py), the tensor-parallel path (multigpu.tp_extra_info), the
terminal summary and the report all call these, so a formula changed here changes everywhere.
Each returns None where an input is missing or zero (a figure that cannot be formed is not 0).
The definitions are schema.METRICS' ``definition`` texts; docs/metrics.md explains them.
"""

from __future__ import annotations

from pytest_moeperf.metrics.step_model import expected_distinct_experts

GB = 1e9  # decimal, as every "per GB" figure of the suite (and the paper's GB)
MIB = 2**20


def peak_memory_bytes(peak_allocated_bytes: float | None, peak_rss_bytes: float | None) -> float | None:
    """The peak memory a case needs: the allocator's peak on a GPU, the process's RSS peak on the CPU
    (where there is no allocator peak: ``peak_allocated_bytes`` is null there)."""
    return peak_allocated_bytes if peak_allocated_bytes is not None else peak_rss_bytes


def per_gb(tokens_per_s: float | None, memory_bytes: float | None) -> float | None:
    """Throughput per decimal GB of peak memory (``tokens_per_s_per_gb``; the paper's per-GB with E2E)."""
    return tokens_per_s / (memory_bytes / GB) if tokens_per_s is not None and memory_bytes else None


def per_active_billion(value: float | None, params_active: float | None) -> float | None:
    """A figure per billion active parameters: the paper's APE (activated-parameter efficiency)."""
    return value / (params_active / 1e9) if value is not None and params_active else None


def ape_tpot(decode_tokens_per_s: float | None, params_active: float | None) -> float | None:
    """Ours: decode tokens/s per active B (prefill excluded)."""
    return per_active_billion(decode_tokens_per_s or None, params_active)


def ape_e2e(e2e_tokens_per_s: float | None, params_active: float | None) -> float | None:
    """The paper's APE-TPOT: its "TPOT" is E2E tokens/s (prefill included), per active B."""
    return per_active_billion(e2e_tokens_per_s, params_active)


def ape_inv_ttft(ttft_ms: float | None, params_active: float | None) -> float | None:
    """(1 / TTFT in s) per active B."""
    return per_active_billion(1000.0 / ttft_ms, params_active) if ttft_ms else None


def ape_energy(tokens_per_j: float | None, params_active: float | None) -> float | None:
    """Tokens per joule per active B."""
    return per_active_billion(tokens_per_j or None, params_active)


def energy_per_round_j(energy_j: float, rounds: int) -> float:
    return energy_j / rounds


def tokens_per_j(tokens: float, energy_j: float) -> float:
    return tokens / energy_j


def j_per_1k_tokens(tokens: float, energy_j: float) -> float:
    return 1000.0 * energy_j / tokens


def paper_kv_estimate_bytes(peak_allocated_bytes: int | None, pre_decode_allocated_bytes: int | None) -> int | None:
    """The paper's KV estimate: the allocator's peak over what was allocated before the decode."""
    if peak_allocated_bytes is None or pre_decode_allocated_bytes is None:
        return None
    return peak_allocated_bytes - pre_decode_allocated_bytes


def paper_peak_vram_mib(peak_allocated_bytes: int | None) -> float | None:
    return peak_allocated_bytes / MIB if peak_allocated_bytes is not None else None


def decode_step_bytes(params_active: int, input_embedding_params: int, dtype_bytes: int, kv_cache_bytes: int,
                      batch_size: int = 1, moe_inactive_params: int = 0, n_experts: int | None = None,
                      top_k: int | None = None) -> int:
    """Bytes one decode step reads: active weights (+ one embedding row, negligible) and the KV cache."""
    weights = params_active
    if batch_size > 1 and n_experts and top_k and moe_inactive_params:
        # b tokens route to E(1 - (1 - k/E)^b) distinct experts per layer, expected (step_model.py's formula)
        per_expert_total = moe_inactive_params / (n_experts - top_k)
        extra_experts = expected_distinct_experts(n_experts, top_k, batch_size) - top_k
        weights += int(per_expert_total * extra_experts)
    return int(weights * dtype_bytes + kv_cache_bytes)


def roofline_fraction(step_bytes: int, bandwidth_bytes_per_s: float | None, tpot_ms: float | None) -> float | None:
    """The bandwidth floor of one decode step over the measured ms/token (1.0: at the roof)."""
    if not bandwidth_bytes_per_s or not tpot_ms:
        return None
    floor_ms = 1000.0 * step_bytes / bandwidth_bytes_per_s
    return floor_ms / tpot_ms


def efficiency(info: dict) -> dict:
    """The efficiency keys of one case's extra_info from its measured keys (both GPU paths call this)."""
    a = info.get("params_active")
    mem = peak_memory_bytes(info.get("peak_allocated_bytes"), info.get("peak_rss_bytes"))
    return {
        "ape_tpot": ape_tpot(info.get("decode_tokens_per_s"), a),
        "ape_inv_ttft": ape_inv_ttft(info.get("ttft_ms"), a),
        "ape_energy": ape_energy(info.get("tokens_per_j"), a),
        "tokens_per_s_per_gb": per_gb(info.get("decode_tokens_per_s") or None, mem),
    }
