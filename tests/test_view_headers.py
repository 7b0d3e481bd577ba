"""Every view's headers come from the metric registry (issue 28, AIPerf's rule): each column header of the
report's tables (summary, serving, Tables 1-12, ablations, harness) and each CSV header is one the registry
(schema.METRICS, REPORT_METRICS, KEYS) gives, so no view writes a title, a unit or a format of its own."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from pytest_moeperf.metrics import formats, schema
from pytest_moeperf.report import cli as report_cli
from pytest_moeperf.report import exports

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0001_core-matrix.json"
CORE_BASE = ROOT / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0002_core-matrix.json"
ABLATE = ROOT / "baselines" / "h200-runs" / "ablate.json"
PAPER = ROOT / "baselines" / "h100" / "paper-h100.json"
SERVING = ROOT / "baselines" / "h200-runs" / "2026-12-02" / "serving" / "serving-all.json"
RECORDS = ROOT / "baselines" / "h200-runs" / "2026-12-02" / "serving" / "serving-records.jsonl"
HARNESS = {"name": "test_harness_speed[closed-c64]", "fullname": "benchmarks/test_serving_harness.py::"
           "test_harness_speed[closed-c64]", "param": "closed-c64", "stats": {"median": 2.0},
           "extra_info": {"harness_point": "cc64", "harness_requests_per_s": 1234.5, "harness_lateness_ms_p99": 0.3,
                          "harness_added_latency_ms_p50": 0.8, "harness_added_latency_ms_p99": 2.5,
                          "client_cpu_ms_per_request": 0.2}}
# sections that are not metric views: the run's metadata and the metric definitions (the registry itself)
NOT_VIEWS = ("Run", "Definitions")
DISPLAY_UNITS = ("GB", "MB", "kB", "bytes")


def _pattern(text: str) -> str:
    """A registry title as a regex: ``{ref}`` stands for any name."""
    return re.escape(text).replace(re.escape("{ref}"), ".+")


def _allowed() -> re.Pattern:
    heads, names = [], []
    for m in schema.VIEW_METRICS_BY_KEY.values():
        units = [m.unit] + (list(DISPLAY_UNITS) if m.unit == "bytes" else [])
        for unit in units:
            for short in (False, True):
                head = m.head(unit, short=short, ref="{ref}") if "{ref}" in (m.title + (m.short or "")) else \
                    m.head(unit, short=short)
                heads.append(_pattern(head))
                names.append(_pattern(head[:head.rindex(" (")] if head.endswith(")") else head))
        if m.paper:
            heads.append(re.escape(f'paper "{m.paper}"'))
    heads += [re.escape(schema.pair_header(k[:-4])) for k in schema.METRICS_BY_KEY if k.endswith("_p50")
              and f"{k[:-4]}_p99" in schema.METRICS_BY_KEY]
    heads += [re.escape(k.header) for k in schema.KEYS]
    sides = "|".join(names)
    return re.compile(f"^(?:{'|'.join(heads)}|(?:{sides}) (?:baseline|paper|Δ %))$")


def _headers(md: str) -> list[tuple[str, str]]:
    """(section, header) of every table of the page outside NOT_VIEWS."""
    out, section, lines = [], "", md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            section = line[3:].strip()
        if (line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---")
                and section not in NOT_VIEWS):
            out += [(section, h.strip().replace("\\|", "|")) for h in line.strip()[2:-2].split(" | ")]
    return out


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("views")
    run = json.loads(CORE.read_text())
    run["benchmarks"] += json.loads(ABLATE.read_text())["benchmarks"] + [HARNESS]
    run["benchmarks"] += json.loads(SERVING.read_text())["benchmarks"]
    (d / "run.json").write_text(json.dumps(run))
    out = {}
    for name, against in (("baseline", CORE_BASE), ("paper", PAPER), ("alone", None)):
        inputs = report_cli.compose([str(d / "run.json")], str(against) if against else None)
        out[name] = report_cli.markdown_of(inputs.results, inputs.baseline, inputs.serving, harness=inputs.harness,
                                           device=inputs.device)
    return out


def test_every_table_header_of_the_report_is_the_registrys(pages):
    allowed = _allowed()
    for name, md in pages.items():
        headers = _headers(md)
        sections = {s for s, _ in headers}
        assert {"Summary", "Serving under load", "Tables 1–8 (core matrix)", "Ablations (Tables 9–12)",
                "Harness benchmarks", "MoE vs dense: the per-step model and the crossover"} <= sections, (name, sections)
        wrong = sorted({(s, h) for s, h in headers if h and not allowed.match(h)})
        assert not wrong, (name, wrong)
    # the columns the registry now names, as a reader sees them
    md = pages["baseline"]
    for header in ("Weights (GB)", "Δ vs gpt-oss-20b (GB)", "% less for gpt-oss-20b vs this model (%)",
                   "Δ decode vs greedy (%)", "Δ E2E vs smallest (%)", "Decode @smallest (tokens/s)",
                   "Peak − weights (GB)", "KV measured − analytic (bytes)", "APE E2E (tokens/s/B)"):
        assert f"| {header} |" in md, header


def test_a_header_the_registry_does_not_give_is_caught(pages):
    """The check above can fail: a header written in a view (the old Table 5 'Active params (B)' form is the
    registry's; a made-up one is not)."""
    allowed = _allowed()
    assert allowed.match("Active params (B)") and allowed.match("TTFT baseline") and allowed.match("TTFT Δ %")
    for made_up in ("Weights (GiB)", "Δ decode (%)", "Peak alloc. (GB)", "TTFT (s)", "Experts per step (n)"):
        assert not allowed.match(made_up), made_up


def test_every_axis_label_of_the_plots_is_the_registrys(tmp_path, monkeypatch):
    """The plots are views too: each axis label of every plot (cases and serving) is a registry header (a log
    axis adds ', log scale'; against the paper the APE E2E panel names the paper's figure below)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    from pytest_moeperf.report import serving_plots
    from pytest_moeperf.report.tables import Report

    labels: list[str] = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: labels.extend(
        t for ax in fig.axes for t in (ax.get_xlabel(), ax.get_ylabel()) if t))
    inputs = report_cli.compose([str(CORE)], str(PAPER))
    Report(inputs.results, inputs.baseline).write_plots(tmp_path)
    serving_plots.write_plots(report_cli.compose([str(SERVING)]).serving, tmp_path)
    allowed = _allowed()
    assert len(set(labels)) >= 12
    wrong = sorted({t for t in labels if not allowed.match(t.split("\n")[0].removesuffix(", log scale"))})
    assert not wrong, wrong


def test_every_csv_header_is_a_registry_key_with_its_unit(tmp_path):
    inputs = report_cli.compose([str(CORE)])
    serving = report_cli.compose([str(SERVING)]).serving
    files = [exports.write_cases(inputs.results.rows, tmp_path), exports.write_points(serving, tmp_path),
             exports.write_requests(exports.read_records([str(RECORDS)]), tmp_path)]
    known = set(schema.VIEW_METRICS_BY_KEY) | set(schema.KEYS_BY_KEY)
    for path in files:
        with open(path, encoding="utf-8") as fh:
            header = next(csv.reader(fh))
        keys = [h.split(" (")[0] for h in header]
        assert [k for k in keys if k not in known] == [], path.name
        assert header == [schema.csv_header(k) for k in keys], path.name
    assert "ttft_ms (ms)" in header and "error" in header  # requests.csv: a unit where there is one


def test_one_home_for_number_formats():
    """The report's formats are the registry's: every Metric.fmt is one formats.formatter knows, and the report
    package defines no number formatter of its own."""
    for m in schema.VIEW_METRICS_BY_KEY.values():
        assert formats.formatter(m.fmt)(1234.5678) != formats.DASH, m.key
    report_dir = ROOT / "pytest_moeperf" / "report"
    own = [f"{p.name}: {line.strip()}" for p in sorted(report_dir.glob("*.py")) for line in p.read_text().splitlines()
           if re.search(r"\{[^{}]*:[+,]?\.\d[fg]\}|^def (fmt|sig|pct)\(", line.strip())]
    assert own == [], own


def test_the_serving_terminal_summary_takes_its_columns_from_the_registry():
    """`moeperf serving metrics` (the terminal view): each column is a registry metric's ``term`` (header, scale,
    format), like the case summary's."""
    from types import SimpleNamespace

    from pytest_moeperf.serving.summary import TERM_KEYS, render_serving_summary

    x = {"request_throughput_per_s": 0.77543, "req_ttft_ms_p50": 667.63, "failed_requests": 0}
    head, row = render_serving_summary([(SimpleNamespace(point_id="m-cc4"), x)], [], {}).splitlines()[:2]
    terms = [schema.METRICS_BY_KEY[k].term for k in TERM_KEYS]
    assert head.split()[1:-1] != [] and " ".join(head.split()[1:-1]) == " ".join(t[0] for t in terms)
    cells = row.split()[1:-1]
    assert cells[0] == terms[0][2].format(0.77543) and cells[3] == terms[3][2].format(667.63)
    assert cells[1] == formats.DASH  # not in the point: a dash
