"""Distinct experts activated per decode step per layer, as the batch grows (MoE models).

The mechanism that erodes MoE's advantage under load: one decode step of a batch of b requests
routes b tokens, and the union of their top-k experts — the expert weights that step must read —
grows with b towards all E experts. Measured in an untimed pass before the engine starts (the
engine's forward runs in paged attention, possibly in CUDA graphs, where hooks do not fire):
b prompts are prefilled with a plain cache, then one decode step of b tokens runs with forward
hooks on the routers. The decode tokens are seeded random ids, one per request: every exact
prompt ends with the same template trailer, and a random-weight model's greedy next token is
then the same for all of them, which would hide the spread that real generated text has. Uniform routing would give E * (1 - (1 - k/E)^b), reported beside it.

The prefill's cache goes to the decode step under the name the installed forward takes (``cache``
from transformers 5.2x, which warns that ``past_key_values`` goes in 5.40; 5.17 knows only that).
"""

from __future__ import annotations

from pytest_moeperf.measure.outputs_check import cache_kwarg
from pytest_moeperf.metrics.step_model import expected_distinct_experts
from pytest_moeperf.model.routing import router_logits, top_k_experts


def distinct_experts_vs_batch(model, prompts: list[list[int]], batches: list[int]) -> dict | None:
    import torch

    cfg = model.config
    n_experts = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    top_k = getattr(cfg, "num_experts_per_tok", None)
    if not n_experts or not top_k or not prompts:
        return None
    length = min(len(p) for p in prompts)
    kw = cache_kwarg(model)  # the output's cache field has the same name
    rows = []
    for b in batches:
        ids = torch.tensor([prompts[i % len(prompts)][-length:] for i in range(b)], device=model.device)
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            gen = torch.Generator().manual_seed(b)
            nxt = torch.randint(0, model.config.vocab_size, (b, 1), generator=gen).to(model.device)
            with router_logits(model) as captured:  # the decode step only, not the prefill
                model(input_ids=nxt, use_cache=True, **{kw: getattr(out, kw)})
        if not captured:
            return None
        per_layer = [int(torch.unique(top_k_experts(logits, n_experts, top_k)).numel()) for logits in captured]
        rows.append({"batch": b, "distinct_experts_per_layer": per_layer,
                     "mean_distinct_experts": sum(per_layer) / len(per_layer),
                     "uniform_expectation": expected_distinct_experts(n_experts, top_k, b)})
        del out
    return {"experts": n_experts, "top_k": top_k, "prompt_tokens": length, "by_batch": rows}


def at_batch(table: dict | None, batch: float | None) -> float | None:
    """Mean distinct experts per layer at a (fractional) batch, interpolated linearly in the table."""
    if not table or batch is None:
        return None
    rows = sorted(table["by_batch"], key=lambda r: r["batch"])
    if batch <= rows[0]["batch"]:
        return rows[0]["mean_distinct_experts"]
    for lo, hi in zip(rows, rows[1:]):
        if batch <= hi["batch"]:
            f = (batch - lo["batch"]) / (hi["batch"] - lo["batch"])
            return lo["mean_distinct_experts"] + f * (hi["mean_distinct_experts"] - lo["mean_distinct_experts"])
    return rows[-1]["mean_distinct_experts"]
