"""The report's tables over context: Tables 2, 3, 4, 7 and memory vs context, each a function of the
report listed in tables.CORE_TABLES.

Over every context the runs hold (128 ... 32768 when a core matrix and a long-context run are
given together). A failed case (CUDA OOM at a long context) is a row whose cells say what
happened ("OOM"), placed at its model x context; Table 4 says which contexts failed.
"""

from __future__ import annotations

from collections import defaultdict

from pytest_moeperf.metrics.schema import VIEW_METRICS_BY_KEY, key_header
from pytest_moeperf.report.columns import COL, bytes_col, _change
from pytest_moeperf.report.failed_cases import failed_text
from pytest_moeperf.metrics.formats import formatter
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


def _by_context(report) -> list[Row]:
    index = {name: i for i, name in enumerate(report.series_names())}
    return sorted(report.core_rows(), key=lambda r: (r.context, index[r.series]))

def table2(report) -> list[str]:
    out = ["### Table 2: Throughput and TPOT vs context", "",
           "Decode throughput and TPOT exclude prefill; E2E throughput"
           + (" (the paper's \"TPOT\")" if report.paper_side() else "") + " includes it. A case that failed "
           "shows its reason (OOM: CUDA out of memory) instead of numbers.", ""]
    cols = [COL["tpot"], COL["decode"], COL["e2e"]]
    return out + report.metric_table(_by_context(report), report._keys("context_tokens", "model"), cols)

def table3(report) -> list[str]:
    out = ["### Table 3: TTFT vs context", "", "TTFT includes prefill.", ""]
    return out + report.metric_table(_by_context(report), report._keys("context_tokens", "model"),
                                   [COL["ttft"], COL["ttft_p95"]])

def table4(report) -> list[str]:
    out = ["### Table 4: Throughput change from the smallest to the largest context", "",
           "Over the smallest and largest context all models share (else each model's own); a model measured "
           "beyond them gets a second line to its own largest measured context. Negative is a decline."
           + (" The paper's Table 4 is 128 → 2048 tokens on its \"TPOT\" (= E2E throughput)."
              if report.paper_side() else ""), ""]
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in report.core_rows():
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
    failed = failed_contexts(report.core_rows())
    if not spans:
        return out + ["_Needs at least two contexts of one model._", ""]
    side = "paper" if report.paper_side() else "baseline"
    key_rows, cells = [], {"decode_tokens_per_s": [], "e2e_tokens_per_s": []}
    for series, lo, hi in spans:
        key_rows.append([series, f"{lo.context} → {hi.context}"])
        b_lo, b_hi = report.match(lo), report.match(hi)
        for key, line in cells.items():
            a, z = lo.v(key), hi.v(key)
            base = None
            if b_lo is not None and b_hi is not None:
                base = _change(b_hi.v(key), b_lo.v(key))
            line.append([a, z, _change(z, a), base])
    parts, names = [], []
    for key, name in (("decode_tokens_per_s", "decode"), ("e2e_tokens_per_s", "e2e")):
        lines = cells[key]
        with_base = report.base is not None and any(line[3] is not None for line in lines)
        at, delta = VIEW_METRICS_BY_KEY[f"{name}_at_context_tokens_per_s"], VIEW_METRICS_BY_KEY[f"{name}_change_pct"]
        at_fmt, delta_fmt = formatter(at.fmt), formatter(delta.fmt)
        headers = [at.head(ref="smallest"), at.head(ref="largest"), delta.head(ref="smallest")]
        if with_base:
            headers.append(delta.head(ref=f"smallest, {side}"))
        parts.append((headers, [[at_fmt(line[0]), at_fmt(line[1]), delta_fmt(line[2])]
                                + ([delta_fmt(line[3])] if with_base else []) for line in lines]))
        names.append(at.title.split(" ")[0])
    out += split_table([key_header("model"), key_header("context_tokens")], key_rows, parts, names)
    if any(len(h) == 4 for h, _ in parts):
        out += ["", f"_{side} Δ: the same change over the same two contexts in the {side} (matched by "
                "case id)._"]
    if failed:
        out += ["", "_Not measured (failed): " + "; ".join(f"{s} at {', '.join(c)}" for s, c in failed.items())
                + "._"]
    return out + [""]

def table7(report) -> list[str]:
    out = ["### Table 7: Energy per 1k generated tokens vs context", ""]
    cols = [COL["j1k"], COL["tpj"], COL["energy"]]
    return out + report.metric_table(_by_context(report), report._keys("context_tokens", "model"), cols)

def memory_table(report) -> list[str]:
    """Allocator peak and the KV cache, measured against the analytic formula, per model x context."""
    rows = report.core_rows()
    if not any(r.v("kv_cache_bytes") is not None or r.failed for r in rows):
        return []
    cols = [bytes_col("weights_bytes", unit="GB"), bytes_col("peak_allocated_bytes", unit="GB"),
            bytes_col("peak_over_weights_bytes", get=peak_over_weights_bytes, unit="GB", compare=False),
            bytes_col("kv_cache_bytes", unit="MB"), bytes_col("kv_cache_measured_bytes", unit="MB"),
            bytes_col("kv_measured_minus_analytic_bytes", get=kv_difference_bytes, unit="bytes", compare=False)]
    out = ["### Table 5b: Memory vs context", "",
           "Per model and context: the allocator peak with the KV cache alive, what it holds beyond the weights "
           "(KV cache plus the transients of a round, e.g. an eager attention score matrix), and the KV cache "
           "read from the cache object (`kv_cache_measured_bytes`) against the analytic formula "
           "(`kv_cache_bytes`). MB and GB are decimal.", ""]
    return out + report.metric_table(rows, report._keys("model", "context_tokens"), cols)

