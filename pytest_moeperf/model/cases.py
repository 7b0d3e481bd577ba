"""One benchmark case: the axes of a measurement and its stable pytest id.

pytest-benchmark matches runs by ``fullname``, so ids must never change for the same
case: the core axes always appear (``gpt-oss-20b-c2048-n64``) and every other axis is
appended only when it differs from its default (``-fp32``, ``-static``, ``-b4``,
``-top_p0.9``, ``-experts_batched_mm``). Pure data: no heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass

TEST_NODE = "benchmarks/test_deployment.py::test_generate"

# Decoding presets of the paper's Table 9. Sampling is seeded per round, so a
# sampled case is reproducible and its token count is still forced.
DECODING_PRESETS: dict[str, dict] = {
    "greedy": {"do_sample": False},
    "top_p0.9": {"do_sample": True, "top_p": 0.9, "top_k": 0},
    "top_k50": {"do_sample": True, "top_k": 50},
    "temp1.5": {"do_sample": True, "temperature": 1.5, "top_k": 0},
    "temp0.3": {"do_sample": True, "temperature": 0.3, "top_k": 0},
}

DEFAULTS = {"dtype": "bf16", "backend": "eager", "batch_size": 1, "decoding": "greedy", "experts": None,
            "context_mode": "exact"}


@dataclass(frozen=True)
class Case:
    model: str
    context_tokens: int
    new_tokens: int
    dtype: str = "bf16"
    backend: str = "eager"  # eager (dynamic cache) | static (static cache + torch.compile)
    batch_size: int = 1
    decoding: str = "greedy"
    experts: str | None = None  # transformers experts_implementation for MoE models; None = its default
    context_mode: str = "exact"  # exact | paper-truncate (the paper's trim, a named variant)

    def __str__(self) -> str:
        return self.case_id

    @property
    def case_id(self) -> str:
        parts = [self.model, f"c{self.context_tokens}", f"n{self.new_tokens}"]
        if self.dtype != DEFAULTS["dtype"]:
            parts.append(self.dtype)
        if self.backend != DEFAULTS["backend"]:
            parts.append(self.backend)
        if self.batch_size != DEFAULTS["batch_size"]:
            parts.append(f"b{self.batch_size}")
        if self.decoding != DEFAULTS["decoding"]:
            parts.append(self.decoding)
        if self.experts is not None:
            parts.append(f"experts_{self.experts}")
        if self.context_mode != DEFAULTS["context_mode"]:
            parts.append(self.context_mode)
        return "-".join(parts)

    @property
    def fullname(self) -> str:
        return f"{TEST_NODE}[{self.case_id}]"
