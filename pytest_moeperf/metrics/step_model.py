"""The per-step model: the bytes one decode step of a batch must read, from the model's config alone.

A decode step of ``batch`` sequences reads, once per step, every attention weight (q, k, v, o
projections with their biases, q/k norms, GPT-OSS's sinks), every shared weight (layer norms, the
router, a dense model's MLP, the final norm and the LM head; of the input embedding only one row per
sequence), the experts the batch's tokens route to (MoE), and the KV cache of every sequence of the
batch: per layer, 2 x kv heads x head dim elements per cached token, a sliding-window layer caching
at most ``sliding_window`` tokens.

Distinct experts per MoE layer at batch B, if the B tokens route independently and uniformly:
``E * (1 - (1 - k/E)^B)`` (:func:`expected_distinct_experts`); a measured count can be given instead.

The floor time of a step is its bytes over a bandwidth (:func:`floor_ms`); the energy floor of a token
is the board's idle power over the floor time, per sequence of the batch (:func:`energy_floor_j`): a
board draws at least its idle power, for at least the floor time. Both are lower bounds, not
predictions: compute, kernel launches, the host's scheduling and other requests' prefill chunks in the
same step come on top (the "overhead" of :func:`decompose`).

Pure: the standard library only; ``config`` is any object with a transformers config's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMS = ("attention", "shared", "experts", "kv")  # the byte terms of a step, in the order reported
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class StepShape:
    """What a config says about a decode step's reads, in parameters (elements) per step."""
    layers: int
    hidden: int
    attention_params: int  # all layers
    shared_params: int  # all layers' norms and routers, a dense MLP, the final norm, the LM head
    embedding_params: int  # the input embedding (one row per sequence is read)
    expert_params: int  # one expert of one layer (0: dense)
    n_experts: int  # 0: dense
    top_k: int
    kv_per_token_layer: int  # K and V elements per cached token per layer
    full_layers: int
    sliding_layers: int
    sliding_window: int | None

    @property
    def total_params(self) -> int:
        return (self.attention_params + self.shared_params + self.embedding_params
                + self.layers * self.n_experts * self.expert_params)


def shape_of(config) -> StepShape:
    """The step shape of a GPT-OSS (``gpt_oss``), Qwen3 or Llama-class config (Yi is Llama)."""
    h, n_layers = config.hidden_size, config.num_hidden_layers
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    hd = getattr(config, "head_dim", None) or h // heads
    inter, vocab = config.intermediate_size, config.vocab_size
    bias = bool(getattr(config, "attention_bias", False))
    attn = h * heads * hd + 2 * h * kv_heads * hd + heads * hd * h
    attn += (heads * hd + 2 * kv_heads * hd + h) if bias else 0
    moe_type = getattr(config, "model_type", "") == "gpt_oss"
    attn += heads if moe_type else 0  # per-head attention sinks
    attn += 2 * hd if getattr(config, "model_type", "") == "qwen3" else 0  # q_norm, k_norm
    n_experts = (getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) or 0) if moe_type else 0
    top_k = int(getattr(config, "num_experts_per_tok", 0) or 0) if n_experts else 0
    shared_layer = 2 * h  # input and post-attention norms
    if n_experts:
        shared_layer += n_experts * h + n_experts  # router weight and bias
        expert = h * 2 * inter + 2 * inter + inter * h + h  # gate_up (+bias), down (+bias)
    else:
        mlp_bias = bool(getattr(config, "mlp_bias", False))
        shared_layer += 3 * h * inter + ((2 * inter + h) if mlp_bias else 0)
        expert = 0
    lm_head = 0 if getattr(config, "tie_word_embeddings", False) else vocab * h
    types = list(getattr(config, "layer_types", None) or ["full_attention"] * n_layers)
    sliding = sum(1 for t in types if t == "sliding_attention") if getattr(config, "sliding_window", None) else 0
    return StepShape(layers=n_layers, hidden=h, attention_params=n_layers * attn,
                     shared_params=n_layers * shared_layer + h + lm_head, embedding_params=vocab * h,
                     expert_params=expert, n_experts=int(n_experts), top_k=top_k,
                     kv_per_token_layer=2 * kv_heads * hd, full_layers=n_layers - sliding, sliding_layers=sliding,
                     sliding_window=getattr(config, "sliding_window", None) if sliding else None)


def expected_distinct_experts(n_experts: int, top_k: int, batch: float) -> float:
    """Distinct experts per layer that ``batch`` tokens reach if each picks k of E uniformly and
    independently: E * (1 - (1 - k/E)^B). Equals k at B = 1 and tends to E."""
    if not n_experts:
        return 0.0
    return n_experts * (1.0 - (1.0 - top_k / n_experts) ** batch)


def kv_tokens_per_sequence(shape: StepShape, context_tokens: float) -> float:
    """Cached tokens one sequence's step reads, summed over layers (sliding layers capped at the window)."""
    window = min(context_tokens, shape.sliding_window) if shape.sliding_window else context_tokens
    return shape.full_layers * context_tokens + shape.sliding_layers * window


@dataclass(frozen=True)
class StepBytes:
    attention: float
    shared: float
    experts: float
    kv: float
    distinct_experts: float  # per MoE layer (0: dense)

    @property
    def total(self) -> float:
        return self.attention + self.shared + self.experts + self.kv

    def terms(self) -> dict[str, float]:
        return {t: getattr(self, t) for t in TERMS}


def step_bytes(shape: StepShape, batch: float, context_tokens: float, dtype_bytes: int,
               distinct_experts: float | None = None) -> StepBytes:
    """Bytes one decode step of ``batch`` sequences, each with ``context_tokens`` cached, reads.
    ``distinct_experts``: a measured count per layer; None: :func:`expected_distinct_experts`."""
    if batch <= 0 or context_tokens < 0:
        raise ValueError(f"batch must be > 0 and context >= 0 (got {batch}, {context_tokens})")
    d = 0.0
    if shape.n_experts:
        d = expected_distinct_experts(shape.n_experts, shape.top_k, batch) if distinct_experts is None \
            else float(distinct_experts)
    return StepBytes(attention=shape.attention_params * dtype_bytes,
                     shared=(shape.shared_params + batch * shape.hidden) * dtype_bytes,
                     experts=shape.layers * d * shape.expert_params * dtype_bytes,
                     kv=batch * kv_tokens_per_sequence(shape, context_tokens) * shape.kv_per_token_layer * dtype_bytes,
                     distinct_experts=d)


def mean_decode_context(context_tokens: int, new_tokens: int) -> float:
    """Cached tokens per sequence averaged over the decode steps of a request (prompt + half the new tokens)."""
    return context_tokens + new_tokens / 2.0


def floor_ms(step_bytes_total: float, bandwidth_bytes_per_s: float | None) -> float | None:
    return 1000.0 * step_bytes_total / bandwidth_bytes_per_s if bandwidth_bytes_per_s else None


def energy_floor_j(floor_step_ms: float | None, idle_power_w: float | None, batch: float) -> float | None:
    """J per output token at the floor: idle power for the floor time of one step, per sequence."""
    if floor_step_ms is None or idle_power_w is None or batch <= 0:
        return None
    return idle_power_w * floor_step_ms / 1000.0 / batch


def decompose(measured_per_token: float, floors_per_token: dict[str, float]) -> dict[str, float]:
    """A measured cost per output token (ms or J) split into the byte terms' floors and the rest,
    ``overhead`` (everything the bytes do not explain; negative if the floors exceed the measurement)."""
    out = dict(floors_per_token)
    out["overhead"] = measured_per_token - sum(floors_per_token.values())
    return out
