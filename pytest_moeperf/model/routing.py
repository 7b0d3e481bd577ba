"""MoE routing statistics from a separate, untimed forward pass over the case's context.

Forward hooks on the routers capture their logits; the top-k experts per token give
tokens per expert per layer, the max/mean load (1.0 = perfectly balanced) and the
routing entropy in bits (log2 E = uniform). Random weights do not route uniformly either (on the
H200 the max/mean load of the paper's MoE presets ran from 1.54 to 6.75 over the layers): these
figures describe the kernel's workload, not a trained model's habits.
"""

from __future__ import annotations

import math
from contextlib import contextmanager


@contextmanager
def router_logits(model):
    """Forward hooks on every router of ``model`` for the duration of the block; yields the list
    that receives each router call's logits (one entry per MoE layer and forward)."""
    routers = [m for m in model.modules() if type(m).__name__.endswith("Router")]
    captured: list = []
    hooks = [r.register_forward_hook(lambda mod, args, out: captured.append(out[0] if isinstance(out, tuple) else out))
             for r in routers]
    try:
        yield captured
    finally:
        for h in hooks:
            h.remove()


def top_k_experts(logits, n_experts: int, top_k: int):
    """The experts each token of one router call is sent to: [tokens, top_k] indices."""
    import torch

    return torch.topk(logits.float().reshape(-1, n_experts), top_k, dim=-1).indices


def routing_stats(model, input_ids) -> dict | None:
    import torch

    config = model.config
    n_experts = getattr(config, "num_local_experts", None)
    top_k = getattr(config, "num_experts_per_tok", None)
    if not n_experts or not top_k:
        return None
    with router_logits(model) as captured, torch.inference_mode():
        model(input_ids=input_ids)
    per_layer = []
    for logits in captured:
        chosen = top_k_experts(logits, n_experts, top_k)
        counts = torch.bincount(chosen.reshape(-1), minlength=n_experts).float()
        p = counts / counts.sum()
        entropy = -sum(float(x) * math.log2(float(x)) for x in p if x > 0)
        per_layer.append({"tokens_per_expert": [int(c) for c in counts],
                          "max_over_mean_load": float(counts.max() / counts.mean()),
                          "entropy_bits": entropy})
    if not per_layer:
        return None
    return {"experts": n_experts, "top_k": top_k, "tokens": int(input_ids.numel()),
            "uniform_entropy_bits": math.log2(n_experts),
            "max_over_mean_load": max(x["max_over_mean_load"] for x in per_layer),
            "mean_entropy_bits": sum(x["entropy_bits"] for x in per_layer) / len(per_layer),
            "layers": per_layer}
