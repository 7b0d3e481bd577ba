"""The report's own cost (issue 28): ``python -m pytest_moeperf report`` on a 10,000-benchmark run.

Synthetic data (benchmarks/report_data.py): 100 models (half MoE) x 25 contexts as core cases
(2,500, every one plotted) and 7,500 variants (dtype, backend, decoding, batch size) in the ablation
and other-case tables, 10 rounds of samples each. Reading, tables, the 7 plots, report.html and
cases.csv are all timed (pytest-benchmark, one round: it takes seconds). No time is asserted: a
shared machine's speed is not a property of the code; docs/report.md gives what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_data import deployment_document  # noqa: E402

BENCHMARKS = 10_000
MODELS = 100


@pytest.fixture(scope="module")
def run_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report-cost") / "run.json"
    path.write_text(json.dumps(deployment_document(BENCHMARKS, models=MODELS)), encoding="utf-8")
    return path


def test_report_10000_benchmarks(benchmark, run_json, tmp_path):
    from pytest_moeperf.report import cli

    out = tmp_path / "report"
    args = argparse.Namespace(results=[str(run_json)], against=None, records=[], output=str(out))
    rc = benchmark.pedantic(lambda: cli.run(args), rounds=1, iterations=1)
    assert rc == 0 and (out / "report.html").stat().st_size > 0
    assert sum(1 for _ in open(out / "cases.csv", encoding="utf-8")) == BENCHMARKS + 1
    benchmark.extra_info.update(benchmarks=BENCHMARKS, models=MODELS, report_html_bytes=(out / "report.html").stat().st_size)
