"""Roofline fraction of decode: bytes a decode step must read over the device's bandwidth.

One decode step of batch b reads the active weights once (MoE: the experts the b tokens
route to, E(1 - (1 - k/E)^b) per layer expected under uniform independent routing, exact
k at b = 1; metrics/step_model.py) plus the whole KV cache. At the measured copy bandwidth
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
