"""Seeded workloads: a list of ServingRequest with exact post-template prompts.

Every prompt is built by the exact-context code (pytest_moeperf.model.context): the chat template is
applied and the user content sized so the templated prompt has exactly the asked number of ids.
Request ``i`` of a workload uses filler seed ``seed * 1_000_003 + i``, so prompts differ from
one another (no accidental prefix-cache hits between requests) and are the same in every load
point of a run (the prompts are built once per model and reused). Input and output lengths are
fixed or drawn from a named, seeded distribution. Pure Python apart from the tokenizer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


DISTRIBUTIONS = ("fixed", "uniform", "normal")


@dataclass(frozen=True)
class LengthSpec:
    """A token length: ``fixed`` N, ``uniform`` on [low, high], or ``normal`` (mean, std) clamped to
    [1, 2*mean]. Written as ``128``, ``uniform:64-256`` or ``normal:128,32``."""

    kind: str
    a: int
    b: int = 0

    def __str__(self) -> str:
        return {"fixed": f"{self.a}", "uniform": f"uniform:{self.a}-{self.b}", "normal": f"normal:{self.a},{self.b}"}[self.kind]

    @property
    def max(self) -> int:
        return {"fixed": self.a, "uniform": self.b, "normal": 2 * self.a}[self.kind]

    @property
    def min(self) -> int:
        return {"fixed": self.a, "uniform": self.a, "normal": 1}[self.kind]

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.randint(self.a, self.b)
        return int(min(max(round(rng.gauss(self.a, self.b)), 1), 2 * self.a))


def parse_length(text: str | int, option: str) -> LengthSpec:
    """One line naming the fix for anything that is not a length spec."""
    raw = str(text).strip()
    kind, sep, rest = raw.partition(":")
    try:
        if not sep:
            spec = LengthSpec("fixed", int(raw))
        elif kind == "uniform":
            lo, _, hi = rest.partition("-")
            spec = LengthSpec("uniform", int(lo), int(hi))
            if spec.b < spec.a:
                raise ValueError
        elif kind == "normal":
            mean, _, std = rest.partition(",")
            spec = LengthSpec("normal", int(mean), int(std))
            if spec.b < 0:
                raise ValueError
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"{option}: {raw!r} is not a length; give N, uniform:LOW-HIGH or normal:MEAN,STD "
                         "(whole numbers)") from None
    if spec.min < 1:
        raise ValueError(f"{option}: {raw!r} allows lengths below 1 token")
    return spec


@dataclass(frozen=True)
class WorkloadSpec:
    num_requests: int
    input_tokens: LengthSpec
    output_tokens: LengthSpec
    seed: int = 0
    ignore_eos: bool = True

    def lengths(self) -> list[tuple[int, int]]:
        """(input, output) tokens of every request; one RNG for the whole workload, so the lengths
        depend only on the spec and the seed."""
        rng = random.Random(self.seed)
        return [(self.input_tokens.draw(rng), self.output_tokens.draw(rng)) for _ in range(self.num_requests)]


class PromptCache:
    """Exact prompts by (target tokens, filler seed), kept for the whole session: a 2048-token
    prompt costs ~0.1 s of tokenizer searches, and every load point reuses the same prompts."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._ids: dict[tuple[int, int], tuple[int, ...]] = {}

    def ids(self, target: int, seed: int) -> tuple[int, ...]:
        key = (target, seed)
        if key not in self._ids:
            from pytest_moeperf.model.context import build_exact_context

            self._ids[key] = tuple(build_exact_context(self.tokenizer, target, seed=seed).input_ids)
        return self._ids[key]


def build_workload(spec: WorkloadSpec, prompts: PromptCache, prefix: str = "r") -> list[ServingRequest]:
    from .backend import ServingRequest  # here: the option parsers import this module at every pytest start

    out = []
    for i, (n_in, n_out) in enumerate(spec.lengths()):
        ids = prompts.ids(n_in, spec.seed * 1_000_003 + i)
        out.append(ServingRequest(request_id=f"{prefix}{i}", prompt_ids=ids, max_new_tokens=n_out,
                                  ignore_eos=spec.ignore_eos))
    return out


def synthetic_workload(num_requests: int, input_tokens: int, output_tokens: int, prefix: str = "r") -> list[ServingRequest]:
    """Requests with placeholder prompt ids (no tokenizer): for backends that ignore the prompt,
    such as the stub of the harness speed benchmark."""
    from .backend import ServingRequest  # here: the option parsers import this module at every pytest start

    ids = tuple(range(1, input_tokens + 1))
    return [ServingRequest(f"{prefix}{i}", ids, output_tokens) for i in range(num_requests)]
