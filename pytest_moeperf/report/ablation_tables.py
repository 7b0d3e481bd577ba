"""The report's ablations: Tables 9-12 (each a variant axis against its reference) and the cases no
table showed, each a function of the report listed in tables.ABLATION_TABLES."""

from __future__ import annotations

from collections import defaultdict

from pytest_moeperf.model.cases import DEFAULTS
from pytest_moeperf.metrics.schema import key_header
from pytest_moeperf.report.columns import COL, Col, _change, metric_col
from pytest_moeperf.report.rows import Row


def ablation_groups(report, axis: str, table: str) -> list[tuple[Row, list[Row]]]:
    """[(reference row or None, [variant rows])] for cases differing from core only in ``axis``."""
    default = DEFAULTS[axis]
    groups: dict[tuple, list[Row]] = defaultdict(list)
    refs: dict[tuple, Row] = {}
    for r in report.res.rows:
        key = (r.series, r.context, r.new_tokens)
        tagged = r.paper_table == table
        if r.variant_axes == frozenset({axis}) and (not r.extra_tokens or tagged):
            groups[key].append(r)
        elif tagged and not r.variant_axes and r.axes.get(axis, default) == default:
            refs[key] = r
    core: dict[tuple, Row] = {}
    for r in report.core_rows():
        core.setdefault((r.series, r.context, r.new_tokens), r)
    return [(refs.get(key) or core.get(key), variants) for key, variants in groups.items()]


def ablation_table(report, title: str, intro: str, axis: str, table: str,
                   cols: list[Col], ref_delta: bool = True, status: bool = False) -> list[str]:
    groups = ablation_groups(report, axis, table)
    if not groups:
        return []
    out = [title, "", intro, ""]
    rows: list[Row] = []
    refs: dict[str, Row | None] = {}
    for ref, variants in groups:
        for r in ([ref] if ref is not None else []) + variants:
            rows.append(r)
            refs[r.case_id] = ref

    def delta(key):
        def get(r: Row):
            ref = refs.get(r.case_id)
            return None if ref is None else _change(r.v(key), ref.v(key))
        return get

    keys = [(key_header(axis), lambda r: str(r.ei.get("paper_label") or r.axes.get(axis, DEFAULTS[axis]))),
            (key_header("model"), lambda r: report.model_cell(r, mark=not status)),
            (key_header("context_tokens"), lambda r: str(r.context))]
    if status:
        keys.append((key_header("status"), lambda r: ("not run" if r.ei.get("not_run") else "failed") if r.failed
                     else "ok"))
    all_cols = list(cols)
    if ref_delta:
        ref = {"ref": str(DEFAULTS[axis])}
        all_cols += [metric_col("decode_change_pct", delta("decode_tokens_per_s"), names=ref, compare=False),
                     metric_col("e2e_change_pct", delta("e2e_tokens_per_s"), names=ref, compare=False)]
    lines = report.metric_table(rows, keys, all_cols, table=table)
    if status:
        errs = [f"`{r.case_id}`: {r.error}" for r in rows if r.failed]
        if errs:
            lines.insert(-1, "")
            lines.insert(-1, "Errors: " + "; ".join(errs) + ".")
    return out + lines


def table9(report) -> list[str]:
    return ablation_table(
        report, "### Table 9: Decoding (greedy vs sampling)",
        "Same model, context and token count; Δ relative to greedy (sampled cases still generate exactly n "
        "tokens).", "decoding", "9",
        [COL["decode"], COL["e2e"], COL["e2e_p50"], COL["tpot"]])


def table10(report) -> list[str]:
    tagged = [r for r in report.res.rows if r.paper_table == "10"]
    if tagged:
        rows = sorted(tagged, key=lambda r: (r.series, r.context))
    else:
        per: dict[str, list[Row]] = defaultdict(list)
        for r in report.core_rows():
            per[r.series].append(r)
        rows = [r for rs in per.values() if len(rs) >= 3 for r in rs]
    if not rows:
        return []
    first: dict[str, Row] = {}
    for r in rows:
        if r.series not in first or r.context < first[r.series].context:
            first[r.series] = r

    def delta(key):
        return lambda r: _change(r.v(key), first[r.series].v(key))

    smallest = {"ref": "smallest"}
    cols = [COL["e2e"], metric_col("e2e_change_pct", delta("e2e_tokens_per_s"), names=smallest, compare=False),
            COL["decode"], metric_col("decode_change_pct", delta("decode_tokens_per_s"), names=smallest, compare=False),
            COL["ttft"], COL["tpot"]]
    out = ["### Table 10: Context-length scaling (greedy)", "",
           "Δ relative to each model's smallest context in this table (the paper's Table 10: 512 tokens).", ""]
    return out + report.metric_table(rows, report._keys("model", "context_tokens"), cols, table="10")


def table11(report) -> list[str]:
    return ablation_table(
        report, "### Table 11: Numeric precision", "Failed cases are listed with their error.", "dtype", "11",
        [COL["decode"], COL["e2e"], COL["peak_gb"]], status=True)


def table12(report) -> list[str]:
    return ablation_table(
        report, "### Table 12: Serving stack (eager vs static cache + torch.compile)",
        "eager: dynamic KV cache; static: static cache with the compiled decode step.", "backend", "12",
        [COL["ttft"], COL["tpot"], COL["decode"], COL["e2e"], COL["e2e_p50"]], status=True)


def other_cases(report) -> list[str]:
    rest = [r for r in report.res.rows if r.case_id not in report.shown]
    if not rest:
        return []
    out = ["### Other cases", "", "Cases not shown in the tables above.", ""]
    cols = [COL["ttft"], COL["tpot"], COL["decode"], COL["e2e"], COL["peak_gb"], COL["j1k"]]
    keys = report._keys("case") + [(key_header("status"), lambda r: r.error if r.failed else "ok")]
    return out + report.metric_table(rest, keys, cols)
