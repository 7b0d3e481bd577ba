"""End-to-end: real pytest runs of benchmarks/test_serving.py on the tiny CPU presets (tiny sizes),
the results log and --moeperf-resume, and bad input as one-line usage errors (exit 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_moeperf.metrics import schema
from pytest_moeperf.results.results_log import read_log

from bench_project import copy_benchmark

SMALL = ("--gpu", "cpu", "--moeperf-models", "tiny-dense", "--moeperf-serving-lengths", "64/4",
         "--moeperf-requests", "4", "--moeperf-warmup-requests", "1", "--moeperf-gate", "off")


def _pytest(d: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *SMALL,
                           "--moeperf-results", str(d / "r.jsonl"), "--moeperf-serving-records", str(d / "rec.jsonl"),
                           *args, "benchmarks"], cwd=d, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def serving_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("serving")
    (copy_benchmark(d, "test_serving.py") / "conftest.py").write_text(HOOKS_CONFTEST, encoding="utf-8")
    proc = _pytest(d, "--moeperf-concurrency", "2", "--moeperf-rate", "40", "--benchmark-json", str(d / "b.json"))
    return d, proc


# the suite's hooks, implemented in a conftest as a user would: each call is written to hooks.txt
HOOKS_CONFTEST = """
def pytest_moeperf_case_finished(config, case, extra_info):
    with open("hooks.txt", "a") as fh:
        fh.write(f"finished {case.case_id} {extra_info['requests']}\\n")
"""


@pytest.mark.e2e
def test_serving_points_have_progress_lines_and_the_suites_hooks(serving_run):
    """Serving load points are a kind of the one plugin session: its progress line (place in the run and
    time left) and its pytest_moeperf_case_finished hook, as the single-request cases have."""
    d, proc = serving_run
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "moeperf: point 1/2: tiny-dense-c64-n4-cc2" in proc.stdout
    assert "moeperf: point 2/2: tiny-dense-c64-n4-r40" in proc.stdout
    assert sorted((d / "hooks.txt").read_text().splitlines()) == ["finished tiny-dense-c64-n4-cc2 4",
                                                                  "finished tiny-dense-c64-n4-r40 4"]


@pytest.mark.e2e
def test_serving_run_writes_every_metric(serving_run):
    d, proc = serving_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((d / "b.json").read_text())
    names = sorted(b["param"] for b in doc["benchmarks"])
    assert names == ["tiny-dense-c64-n4-cc2", "tiny-dense-c64-n4-r40"]
    for b in doc["benchmarks"]:
        x = b["extra_info"]
        missing = [k for k in schema.SERVING_REQUIRED_KEYS if k not in x]
        assert not missing, missing
        assert x["requests"] == 4 and x["failed_requests"] == 0 and len(x["samples"]["req_ttft_ms"]) == 4
        assert x["output_tokens_total"] == 16 and x["energy_unavailable"]  # CPU: a reason, not a number
        assert x["engine"]["engine_resolved"]["num_blocks"] == 512
        assert x["client_cpu_ms_per_request"] > 0 and isinstance(x["client_lagged"], bool)
        assert (x["harness_lateness_ms_p99"] is None) == (x["load_mode"] == "concurrency")
    assert "moeperf serving metrics" in proc.stdout and "saturation rule" in proc.stdout
    recs = [json.loads(x) for x in (d / "rec.jsonl").read_text().splitlines()]
    assert len(recs) == 8 and {r["point_id"] for r in recs} == set(names)
    logged = [r for r in read_log(str(d / "r.jsonl")) if r.get("type") == "case"]
    assert sorted(r["benchmark"]["param"] for r in logged) == names


@pytest.mark.e2e
def test_resume_skips_finished_points(serving_run):
    d, proc = serving_run
    assert proc.returncode == 0
    again = _pytest(d, "--moeperf-concurrency", "2", "--moeperf-rate", "40", "--moeperf-resume")
    assert again.returncode == 0, again.stdout[-2000:]  # a finished sweep resumed is done (issue 27.9)
    assert "moeperf resume: all 2 serving point(s) already finished in " in again.stdout
    assert "; nothing left to run" in again.stdout and "measured again" not in again.stdout


BAD = [
    (("--moeperf-concurrency", "0"), "--moeperf-concurrency: 0 must be > 0"),
    (("--moeperf-concurrency", "-4"), "--moeperf-concurrency: -4 must be > 0"),
    (("--moeperf-concurrency", "four"), "--moeperf-concurrency: 'four' is not a number"),
    (("--moeperf-concurrency", "1.5"), "--moeperf-concurrency: 1.5 is not a whole number"),
    (("--moeperf-rate", "0"), "--moeperf-rate: 0 must be > 0"),
    (("--moeperf-rate", "fast"), "--moeperf-rate: 'fast' is not a number"),
    (("--moeperf-rate", "1,,2"), "--moeperf-rate: empty item"),
    (("--moeperf-concurrency", ""), "--moeperf-concurrency: empty value"),
    (("--moeperf-concurrency", "4,4"), "--moeperf-concurrency: '4' is given twice"),
    (("--moeperf-concurrency", "4,4.0"), "--moeperf-concurrency: a load is given twice"),
    (("--moeperf-rate", "0.5,.5"), "--moeperf-rate: a load is given twice"),
    (("--moeperf-cuda-graphs", "on,on"), "--moeperf-cuda-graphs: 'on' is given twice"),
    (("--moeperf-slo", "ttfb_ms=100"), "unknown SLO metric 'ttfb_ms'"),
    (("--moeperf-cuda-graphs", "maybe"), "--moeperf-cuda-graphs: unknown 'maybe'"),
    (("--moeperf-serving-lengths", "4000/200"), "exceed tiny-dense's"),
    (("--moeperf-arrival", "bursty"), "--moeperf-arrival: unknown 'bursty'"),
]


@pytest.mark.parametrize("args,msg", BAD)
def test_bad_serving_option_is_one_line(args, msg):
    from pytest_moeperf.measure.run_options import parse_options
    from pytest_moeperf.serving.options import parse_serving_options

    raw = dict(zip(["moeperf_" + a[10:].replace("-", "_") for a in args[::2]], args[1::2]))
    raw["moeperf_slo"] = [raw["moeperf_slo"]] if "moeperf_slo" in raw else []
    base = parse_options({"moeperf_gpu": "cpu", "moeperf_models": "tiny-dense"}.get, cuda_available=False)
    with pytest.raises(ValueError) as e:
        parse_serving_options(raw.get, base)
    assert msg in str(e.value) and "\n" not in str(e.value)


@pytest.mark.e2e
def test_bad_input_exits_4_with_one_line(tmp_path):
    """The path from a bad value to pytest's usage error, once, in a real run (no traceback)."""
    copy_benchmark(tmp_path, "test_serving.py")
    proc = _pytest(tmp_path, "--moeperf-concurrency", "0")
    assert proc.returncode == 4, proc.stdout[-2000:]
    assert "ERROR: --moeperf-concurrency: 0 must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "INTERNALERROR" not in proc.stderr + proc.stdout


@pytest.mark.e2e
def test_gate_compares_serving_points_on_their_request_samples(serving_run):
    from pytest_moeperf.gate import config as gate_config
    from pytest_moeperf.gate import gate_run
    from pytest_moeperf.gate import verdicts as gate_verdicts

    d, proc = serving_run
    assert proc.returncode == 0
    doc = json.loads((d / "b.json").read_text())
    result = gate_run.compare_documents([doc], doc, gate_config.load_gate_config(None))
    assert len(result.benchmarks) == 2 and not result.missing
    for b in result.benchmarks:
        assert b.status == "compared" and b.verdict == gate_verdicts.PASS  # the same run on both sides
        by_key = {m.metric: m for m in b.metrics}
        assert by_key["req_ttft_ms_p50"].method == gate_verdicts.METHOD_MWU  # per-request samples: the rank test
        assert by_key["output_tokens_per_s"].method == gate_verdicts.METHOD_SUMMARY
        assert "ttft_ms" not in by_key  # single-request metrics are not looked for here


@pytest.mark.e2e
def test_report_draws_the_serving_plots(serving_run, tmp_path):
    import argparse

    from pytest_moeperf.report import cli as report_cli

    d, _ = serving_run
    assert report_cli.run(argparse.Namespace(results=str(d / "b.json"), against=None, output=str(tmp_path))) == 0
    md = (tmp_path / "report.md").read_text()
    assert "## Serving under load" in md and "### Knees" in md and "advantage vanishes" in md
    assert "tiny-dense | cc2" in md and "no open-loop" not in md
    import json

    points = [b["extra_info"] for b in json.loads((d / "b.json").read_text())["benchmarks"]]
    energy = any(x.get("j_per_output_token") is not None for x in points)
    opened = any(x.get("load_mode") != "concurrency" for x in points)
    expect = {"serving_pareto.png": True, "serving_latency_vs_load.png": True,
              "serving_goodput_vs_rate.png": opened, "serving_j_per_token_vs_load.png": energy}
    for png, drawn in expect.items():  # a plot with nothing to show is not drawn, nor named in the page
        assert (tmp_path / png).exists() == drawn and (png in md) == drawn, png
        assert not drawn or (tmp_path / png).stat().st_size > 5000, png
