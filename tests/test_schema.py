"""The metric registry (schema.METRICS) is the one home: gate defaults, summary, report and docs follow it."""

from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pytest_moeperf.metrics import derived
from pytest_moeperf.gate import config as gate_config
from pytest_moeperf.report import columns as report_columns
from pytest_moeperf.metrics import schema
from pytest_moeperf.results import summary

ROOT = Path(__file__).resolve().parent.parent
KEYS = set(schema.METRICS_BY_KEY)


def test_docs_registry_table_is_the_registry():
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    start, end = text.index(schema.DOCS_BEGIN), text.index(schema.DOCS_END) + len(schema.DOCS_END)
    assert text[start:end] == schema.registry_markdown(), "run: python -m pytest_moeperf.metrics.schema"


def _doc_rows(path: Path) -> dict[str, str]:
    """``| `key` | unit |`` rows of a doc; ``req_x_p50/p90/p99`` stands for three keys."""
    text = path.read_text(encoding="utf-8")
    if schema.DOCS_BEGIN in text:
        text = text[:text.index(schema.DOCS_BEGIN)] + text[text.index(schema.DOCS_END):]
    out = {}
    for key, unit in re.findall(r"^\| `([a-z0-9_/]+)` \| ([^|]+) \|", text, re.M):
        prefix, _, first = key.split("/")[0].rpartition("_")
        for suffix in [first, *key.split("/")[1:]] if "/" in key else [None]:
            out[f"{prefix}_{suffix}" if suffix else key] = unit.strip()
    return out


def test_docs_metric_rows_state_the_registry_unit():
    for scope, doc in (("case", "metrics.md"), ("serving", "serving.md")):
        rows = _doc_rows(ROOT / "docs" / doc)
        keys = {m.key for m in schema.METRICS if m.scope == scope}
        assert keys <= set(rows), f"docs/{doc} explains no row for {sorted(keys - set(rows))}"
        for key in keys:
            assert rows[key] == schema.METRICS_BY_KEY[key].unit, (doc, key)


def test_gate_defaults_and_docs_gate_table_follow_the_registry():
    cfg = gate_config.GateConfig()
    assert cfg.thresholds_pct == {m.key: m.threshold_pct for m in schema.METRICS}
    text = (ROOT / "docs" / "gate.md").read_text(encoding="utf-8")
    table = text[text.index("## Default thresholds and why"):].split("\n\n")[1]  # the table's lines
    checked = set()
    for row in re.findall(r"^\| (.+?) \| (.+?) \| .+ \|$", table, re.M)[1:]:
        pct = float(re.search(r"[\d.]+", row[1]).group())
        for pattern in re.findall(r"`([^`]+)`", row[0]):
            for key in fnmatch.filter(KEYS, pattern):
                assert schema.METRICS_BY_KEY[key].threshold_pct == pct, (key, row)
                checked.add(key)
    case = {m.key for m in schema.CASE_METRICS}  # the table covers the single-request metrics
    assert checked >= case, sorted(case - checked)


def test_kind_threshold_in_pyproject_moves_every_metric_of_that_kind_but_not_a_metric_set_itself(tmp_path):
    py = tmp_path / "pyproject.toml"
    py.write_text("[tool.moeperf.gate]\nthresholds = {latency = 5.0, ttft_ms_p95 = 12}\n")
    cfg = gate_config.load_gate_config(str(py))
    for m in schema.METRICS:
        want = 12.0 if m.key == "ttft_ms_p95" else 5.0 if m.kind == "latency" else m.threshold_pct
        assert cfg.threshold_pct(m.key) == want, m.key


def test_summary_and_report_headers_come_from_the_registry():
    for header, key, _, fmt in summary.COLUMNS:
        if key in KEYS:
            assert (header, fmt) == schema.METRICS_BY_KEY[key].term[0::2]
    for name, col in report_columns.COL.items():
        if name != "peak_gb":  # bytes shown in GB: the one column with its own scale
            assert any(col.header == m.header and col.short == m.short for m in schema.METRICS), col.header


def test_ungated_metrics_are_the_registry_s():
    assert gate_config.UNGATED_MEMORY_METRICS == {m.key for m in schema.METRICS if not m.gated} == {"peak_rss_bytes"}


pos = st.floats(1e-3, 1e6, allow_nan=False)
maybe = st.one_of(st.none(), pos)


@given(dec=maybe, ttft=maybe, tpj=maybe, alloc=st.one_of(st.none(), st.integers(1, 10**12)),
       rss=st.one_of(st.none(), st.integers(1, 10**12)), active=st.integers(1, 10**12))
def test_efficiency_figures(dec, ttft, tpj, alloc, rss, active):
    out = derived.efficiency({"decode_tokens_per_s": dec, "ttft_ms": ttft, "tokens_per_j": tpj,
                              "peak_allocated_bytes": alloc, "peak_rss_bytes": rss, "params_active": active})
    a = active / 1e9
    mem = alloc if alloc is not None else rss  # the allocator peak on a GPU, RSS on the CPU
    assert (out["ape_tpot"] is None) == (dec is None) and (out["ape_energy"] is None) == (tpj is None)
    assert (out["tokens_per_s_per_gb"] is None) == (dec is None or mem is None)
    if dec is not None:
        assert math.isclose(out["ape_tpot"] * a, dec)
        if mem is not None:
            assert math.isclose(out["tokens_per_s_per_gb"] * mem / 1e9, dec)
    if ttft is not None:
        assert math.isclose(out["ape_inv_ttft"] * a * ttft / 1000, 1.0)
