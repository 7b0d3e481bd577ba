"""Roofline fraction of decode: bytes a decode step must read over the device's bandwidth.

One decode step of batch b reads the active weights once (MoE: the experts the b tokens
route to, at least k per layer; counted here as k per token up to E, an upper bound for
b > 1 that is exact for b = 1) plus the whole KV cache. At the measured copy bandwidth
that read takes ``bytes / bandwidth``; the fraction is that floor over the measured
ms/token: 1.0 would be a decode at the memory-bandwidth roof.
"""

from __future__ import annotations


def measure_copy_bandwidth(size_bytes: int = 2 << 30, repeats: int = 20) -> float | None:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus written (CUDA only)."""
    import torch

    if not torch.cuda.is_available():
        return None
    n = size_bytes // 2
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000.0
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * repeats / seconds


def decode_step_bytes(params_active: int, input_embedding_params: int, dtype_bytes: int, kv_cache_bytes: int,
                      batch_size: int = 1, moe_inactive_params: int = 0, n_experts: int | None = None,
                      top_k: int | None = None) -> int:
    """Bytes one decode step reads: active weights (+ one embedding row, negligible) and the KV cache."""
    weights = params_active
    if batch_size > 1 and n_experts and top_k and moe_inactive_params:
        # b tokens may route to up to min(E, b*k) distinct experts per layer
        per_expert_total = moe_inactive_params / (n_experts - top_k)
        extra_experts = min(n_experts, batch_size * top_k) - top_k
        weights += int(per_expert_total * extra_experts)
    return int(weights * dtype_bytes + kv_cache_bytes)


def roofline_fraction(step_bytes: int, bandwidth_bytes_per_s: float | None, tpot_ms: float | None) -> float | None:
    if not bandwidth_bytes_per_s or not tpot_ms:
        return None
    floor_ms = 1000.0 * step_bytes / bandwidth_bytes_per_s
    return floor_ms / tpot_ms
