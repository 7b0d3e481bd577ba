"""The report as a reader meets it (issue 28): the answer first, harness apart from models, one device,
CSV exports, plain load axes, one colour per model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pytest_moeperf.__main__ import main
from pytest_moeperf.report import cli as report_cli
from pytest_moeperf.report import exports
from pytest_moeperf.report.report_plots import PALETTE, model_palette, series_colors
from pytest_moeperf.report.summary import slug

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0001_core-matrix.json"
CPU_SERVING = ROOT / "docs" / "serving-cpu" / "run1.json"
RECORDS = ROOT / "baselines" / "h200-runs" / "2026-12-02" / "serving" / "serving-records.jsonl"
HARNESS = {"name": "test_harness_speed[closed-c64]", "fullname": "benchmarks/test_serving_harness.py::"
           "test_harness_speed[closed-c64]", "param": "closed-c64", "stats": {"median": 2.0},
           "extra_info": {"harness_point": "cc64", "harness_requests_per_s": 1234.5,
                          "harness_added_latency_ms_p50": 0.8, "harness_added_latency_ms_p99": 2.5}}


def _markdown(paths: list[str]) -> str:
    inputs = report_cli.compose(paths)
    return report_cli.markdown_of(inputs.results, inputs.baseline, inputs.serving, harness=inputs.harness,
                                  device=inputs.device)


def test_the_page_leads_with_the_summary_and_links_every_section(tmp_path):
    doc = json.loads(CORE.read_text())
    doc["benchmarks"].append(HARNESS)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    md = _markdown([str(path)])
    heads = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert heads[:3] == ["Summary", "Contents", "Run"] and heads[-1] == "Definitions"
    assert "Notes" not in heads  # footnotes render under their own rule, no empty heading
    for h in heads:
        assert (f"- [{h}](#{slug(h)})" in md) == (h != "Contents")
    summary = md.split("## Contents")[0]
    assert "| gpt-oss-20b | 2048 | 202.32 | 42.41 |" in summary and "Peak memory (GB)" in summary
    # the harness benchmark is its own section, never a model row of the tables
    assert heads.index("Harness benchmarks") > heads.index("Plots")
    assert "| test_harness_speed[closed-c64] | cc64 | 1,234.5 |" in md
    tables = md.split("## Tables 1–8")[1].split("## Harness benchmarks")[0]
    assert "closed-c64" not in tables


def test_runs_of_two_devices_are_refused_in_one_line(tmp_path, capsys):
    rc = main(["report", str(CORE), str(CPU_SERVING), "-o", str(tmp_path / "rep")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and not (tmp_path / "rep" / "report.md").exists()
    assert err.startswith("error: the runs were measured on 2 devices: NVIDIA H200 (") and "the CPU (" in err
    assert "--against BASELINE.json" in err


def test_csv_exports_per_case_per_point_and_per_request(tmp_path):
    inputs = report_cli.compose([str(CORE)])
    cases = list(csv.DictReader(open(exports.write_cases(inputs.results.rows, tmp_path), encoding="utf-8")))
    assert len(cases) == len(inputs.results.rows) and float(cases[0]["ttft_ms (ms)"]) > 0  # key (unit)
    serving = report_cli.compose([str(CPU_SERVING)]).serving
    points = list(csv.DictReader(open(exports.write_points(serving, tmp_path), encoding="utf-8")))
    assert len(points) == len(serving) and {"series", "load_point", "req_tpot_ms_p50 (ms/token)"} <= set(points[0])
    records = exports.read_records([str(RECORDS)])
    rows = list(csv.DictReader(open(exports.write_requests(records, tmp_path), encoding="utf-8")))
    assert len(rows) == len(records) == 310
    first = rows[0]  # the functions the load points use: TTFT = first token - send
    assert float(first["ttft_ms (ms)"]) == pytest.approx((float(first["first_token_s (s)"]) - float(first["sent_s (s)"])) * 1e3)


def test_a_bad_records_file_is_one_line(tmp_path):
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"no": "sent_s"}\n')
    with pytest.raises(ValueError, match=r"r.jsonl:1: not a request record"):
        exports.read_records([str(bad)])


def test_load_axes_read_1_2_4_not_powers():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from pytest_moeperf.report.serving_plots import plain_load_axis

    fig, ax = plt.subplots()
    ax.plot([1, 2, 4, 16], [1, 2, 3, 4])
    plain_load_axis(ax, [1, 2, 4, 16])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "16"]
    plt.close(fig)


def test_one_colour_per_model_everywhere():
    colors = model_palette(["gpt-oss-20b", "qwen3-32b"])
    single = series_colors({"gpt-oss-20b": "gpt-oss-20b", "qwen3-32b": "qwen3-32b"}, colors)
    serving = series_colors({"qwen3-32b (CUDA graphs on)": "qwen3-32b", "gpt-oss-20b (CUDA graphs off)": "gpt-oss-20b",
                             "qwen3-32b (CUDA graphs off)": "qwen3-32b"}, colors)
    assert single["gpt-oss-20b"] == serving["gpt-oss-20b (CUDA graphs off)"] == PALETTE[0]
    assert single["qwen3-32b"] == serving["qwen3-32b (CUDA graphs on)"] == PALETTE[1]
    assert serving["qwen3-32b (CUDA graphs off)"] not in (PALETTE[0], PALETTE[1])  # a second series stays apart
