"""The report's tables over context: Tables 2, 3, 4, 7 and memory vs context (a mixin of tables.Report).

Over every context the runs hold (128 ... 32768 when a core matrix and a long-context run are
given together). A failed case (CUDA OOM at a long context) is a row whose cells say what
happened ("OOM"), placed at its model x context; Table 4 says which contexts failed.
"""

from __future__ import annotations

from collections import defaultdict

from pytest_moeperf.metrics.schema import METRICS_BY_KEY
from pytest_moeperf.report.columns import COL, Col, bytes_col, _change, _fmt, _pct
from pytest_moeperf.report.failed_cases import failed_text
from pytest_moeperf.report.report_format import split_table
from pytest_moeperf.report.rows import Row


def kv_difference_bytes(r: Row) -> float | None:
    """kv_cache_measured_bytes - kv_cache_bytes: 0 where the analytic formula holds exactly."""
    measured, analytic = r.v("kv_cache_measured_bytes"), r.v("kv_cache_bytes")
    return None if measured is None or analytic is None else measured - analytic


def peak_over_weights_bytes(r: Row) -> float | None:
    """What the allocator peak holds beyond the weights: the KV cache and the transients of a round."""
    peak, weights = r.v("peak_allocated_bytes"), r.v("weights_bytes")
    return None if peak is None or weights is None else peak - weights


def failed_contexts(rows: list[Row]) -> dict[str, list[str]]:
    """Per series, "context: reason" of its failed core cases, in context order."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in sorted((r for r in rows if r.failed and r.context is not None), key=lambda r: r.context):
        out[r.series].append(f"{r.context}: {failed_text(r)}")
    return dict(out)


class ContextTables:
    """Tables over context; mixed into tables.Report (metric_table, core_rows, match ...)."""

    def _by_context(self) -> list[Row]:
        return sorted(self.core_rows(), key=lambda r: (r.context, self.series_names().index(r.series)))

    def table2(self) -> list[str]:
        out = ["### Table 2: Throughput and TPOT vs context", "",
               "Decode throughput and TPOT exclude prefill; E2E throughput"
               + (" (the paper's \"TPOT\")" if self.paper_side() else "") + " includes it. A case that failed "
               "shows its reason (OOM: CUDA out of memory) instead of numbers.", ""]
        cols = [COL["tpot"], COL["decode"], COL["e2e"]]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"), cols)

    def table3(self) -> list[str]:
        out = ["### Table 3: TTFT vs context", "", "TTFT includes prefill.", ""]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"),
                                       [COL["ttft"], COL["ttft_p95"]])

    def table4(self) -> list[str]:
        out = ["### Table 4: Throughput change from the smallest to the largest context", "",
               "Over the smallest and largest context all models share (else each model's own); a model measured "
               "beyond them gets a second line to its own largest measured context. Negative is a decline."
               + (" The paper's Table 4 is 128 → 2048 tokens on its \"TPOT\" (= E2E throughput)."
                  if self.paper_side() else ""), ""]
        groups: dict[str, list[Row]] = defaultdict(list)
        for r in self.core_rows():
            if not r.failed:
                groups[r.series].append(r)
        # like Table 1: over the contexts all models share, where at least two are shared
        common = set.intersection(*({r.context for r in rs} for rs in groups.values())) if groups else set()
        spans: list[tuple[str, Row, Row]] = []
        for series, rows in groups.items():
            shared = [r for r in rows if r.context in common] if len(common) >= 2 else rows
            if len(shared) >= 2:
                spans.append((series, shared[0], shared[-1]))
            if len(shared) >= 2 and rows[-1].context > shared[-1].context:
                spans.append((series, shared[0], rows[-1]))
        failed = failed_contexts(self.core_rows())
        if not spans:
            return out + ["_Needs at least two contexts of one model._", ""]
        side = "paper" if self.paper_side() else "baseline"
        key_rows, cells = [], {"decode_tokens_per_s": [], "e2e_tokens_per_s": []}
        for series, lo, hi in spans:
            key_rows.append([series, f"{lo.context} → {hi.context}"])
            b_lo, b_hi = self.match(lo), self.match(hi)
            for key, line in cells.items():
                a, z = lo.v(key), hi.v(key)
                base = None
                if b_lo is not None and b_hi is not None:
                    base = _change(b_hi.v(key), b_lo.v(key))
                line.append([_fmt(2)(a), _fmt(2)(z), _pct(_change(z, a)), base])
        parts, names = [], []
        for key, name in (("decode_tokens_per_s", "Decode"), ("e2e_tokens_per_s", "E2E")):
            lines = cells[key]
            with_base = self.base is not None and any(line[3] is not None for line in lines)
            headers = [f"{name} @smallest (tokens/s)", f"{name} @largest (tokens/s)", f"Δ {name} (%)"]
            if with_base:
                headers.append(f"{side} Δ {name} (%)")
            parts.append((headers, [line[:3] + ([_pct(line[3])] if with_base else []) for line in lines]))
            names.append(name)
        out += split_table(["Model", "Context (tokens)"], key_rows, parts, names)
        if any(len(h) == 4 for h, _ in parts):
            out += ["", f"_{side} Δ: the same change over the same two contexts in the {side} (matched by "
                    "case id)._"]
        if failed:
            out += ["", "_Not measured (failed): " + "; ".join(f"{s} at {', '.join(c)}" for s, c in failed.items())
                    + "._"]
        return out + [""]

    def table7(self) -> list[str]:
        out = ["### Table 7: Energy per 1k generated tokens vs context", ""]
        cols = [COL["j1k"], COL["tpj"], COL["energy"]]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"), cols)

    def memory_table(self) -> list[str]:
        """Allocator peak and the KV cache, measured against the analytic formula, per model x context."""
        rows = self.core_rows()
        if not any(r.v("kv_cache_bytes") is not None or r.failed for r in rows):
            return []
        unit = METRICS_BY_KEY["kv_cache_measured_bytes"].unit
        cols = [bytes_col("weights_bytes", "GB"), bytes_col("peak_allocated_bytes", "GB"),
                Col("Peak − weights (GB)", lambda r: _gb(peak_over_weights_bytes(r)), _fmt(2), compare=False),
                bytes_col("kv_cache_bytes", "MB"), bytes_col("kv_cache_measured_bytes", "MB"),
                Col(f"KV measured − analytic ({unit})", kv_difference_bytes, _fmt(0), compare=False)]
        out = ["### Table 5b: Memory vs context", "",
               "Per model and context: the allocator peak with the KV cache alive, what it holds beyond the weights "
               "(KV cache plus the transients of a round, e.g. an eager attention score matrix), and the KV cache "
               "read from the cache object (`kv_cache_measured_bytes`) against the analytic formula "
               "(`kv_cache_bytes`). MB and GB are decimal.", ""]
        return out + self.metric_table(rows, self._keys("Model", "Context (tokens)"), cols)


def _gb(x: float | None) -> float | None:
    return None if x is None else x / 1e9
