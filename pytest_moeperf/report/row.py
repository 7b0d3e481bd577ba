"""One report row: a benchmark's case and its extra_info, and what the tables ask of it (core, MoE, ...).

Its own module so that both rows.py (benchmarks) and failed_cases.py (failed entries) build rows
without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from pytest_moeperf.model.cases import DEFAULTS

ABLATION_TABLES = ("9", "10", "11", "12")


# --------------------------------------------------------------------------------------------
# the row

_DTYPE_ALIASES = {"bfloat16": "bf16", "torch.bfloat16": "bf16", "float16": "fp16", "half": "fp16",
                  "torch.float16": "fp16", "float32": "fp32", "float": "fp32", "torch.float32": "fp32"}


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Row:
    case_id: str
    model: str
    context: int | None
    new_tokens: int | None
    axes: dict
    extra_tokens: tuple  # variants beyond the Case axes (tensor parallel: ("tp2",))
    ei: dict
    stats: dict
    series: str = ""

    def v(self, key: str) -> float | None:
        return _num(self.ei.get(key))

    @property
    def failed(self) -> bool:
        return bool(self.ei.get("failed"))

    @property
    def error(self) -> str:
        err = self.ei.get("error")
        return str(err).splitlines()[0] if err else "failed"

    @property
    def paper_table(self) -> str | None:
        t = self.ei.get("paper_table")
        return str(t) if t is not None else None

    @property
    def is_paper(self) -> bool:
        return self.ei.get("source") == "paper"

    @cached_property  # read for every row by every table: computed once (axes are set at construction)
    def variant_axes(self) -> frozenset:
        return frozenset(k for k, default in DEFAULTS.items() if self.axes.get(k, default) != default)

    @cached_property
    def core(self) -> bool:
        # default axes, no unknown id suffix, and not a row of one of the paper's ablation tables
        # (a paper baseline files Table 10's 4096-token row under its plain id)
        return not self.variant_axes and not self.extra_tokens and self.paper_table not in ABLATION_TABLES

    @property
    def active_b(self) -> float | None:
        a = self.v("params_active")
        return a / 1e9 if a else None

    @property
    def moe(self) -> bool:
        arch = str(self.ei.get("architecture") or "").lower()
        if arch:
            return "moe" in arch
        total, active = self.v("params_total"), self.v("params_active")
        return bool(total and active and active < total)
