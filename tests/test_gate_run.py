"""One gate path: a run with and without pytest-xdist gets the same verdicts against a stored baseline.

The head is a committed H200 run (8 % slower decode) replayed through the real plugin, pytest-benchmark
and the xdist merge: a conftest hands each case the committed extra_info instead of loading a model,
so the run takes seconds on the CPU. Thresholds stay at their defaults; the baseline is a storage folder of
the 8 same-code runs baselines/h200-static began with (2026-11-29b/base), so history (pooled rounds,
measured drift) must be used both ways.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import scipy.stats  # noqa: F401  in-process pytester runs restore sys.modules; C extensions must load once

from pytest_moeperf.results import documents
from pytest_moeperf.gate import config as gate_config
from pytest_moeperf.gate import verdicts as gate_verdicts
from pytest_moeperf.gate.gate_run import GateRun

pytestmark = pytest.mark.e2e  # every test here runs a subprocess or pytester

ROOT = Path(__file__).resolve().parent.parent
SAME_CODE = ROOT / "baselines" / "h200-runs" / "2026-11-29b" / "base"
HEAD = ROOT / "baselines" / "h200-runs" / "2026-11-29b" / "slow" / "run1.json"

CONFTEST = f"""
import json
from pytest_moeperf.measure import session

_BENCH = json.load(open({str(HEAD)!r}))["benchmarks"][0]
_REAL = session.MoeperfSession.measure_case

def _replay(self, case, run_rounds):
    assert case.fullname == _BENCH["fullname"], case.fullname
    run_rounds(lambda: None, 2, 0)
    return dict(_BENCH["extra_info"])

def pytest_configure(config):
    session.MoeperfSession.measure_case = _replay

def pytest_unconfigure(config):  # the plain run is in-process: leave the class as it was
    session.MoeperfSession.measure_case = _REAL
"""
CASE = ("--moeperf-models", "gpt-oss-20b", "--moeperf-contexts", "2048", "--moeperf-new-tokens", "64",
        "--moeperf-backend", "static")


def _verdicts(doc: dict) -> list:
    return [(b["fullname"], b["verdict"], [(m["metric"], m["verdict"], m["method"], m["change_pct"])
                                           for m in b["metrics"]]) for b in doc["benchmarks"]]


def _storage(root: Path) -> Path:
    """The 8 runs in pytest-benchmark's storage layout (MACHINE/NNNN_NAME.json)."""
    folder = root / "h200-static" / "Linux-CPython-3.12-64bit"
    folder.mkdir(parents=True)
    for i in range(1, 9):
        (folder / f"{i:04d}_gpt-oss-20b-static.json").write_bytes((SAME_CODE / f"run{i}.json").read_bytes())
    return folder.parent


def test_xdist_and_plain_runs_get_the_same_verdicts(pytester: pytest.Pytester):
    STATIC = _storage(pytester.path)
    pytester.makeconftest(CONFTEST)
    bench = pytester.mkdir("benchmarks")
    (bench / "test_deployment.py").write_text((ROOT / "benchmarks" / "test_deployment.py").read_text())
    docs = {}
    for label, extra in (("plain", ()), ("xdist", ("-p", "xdist", "-n", "2", "--dist", "loadgroup"))):
        verdict = pytester.path / f"{label}.json"
        run = pytester.runpytest_inprocess if label == "plain" else pytester.runpytest_subprocess
        result = run(
            "-p", "no:cacheprovider", f"--rootdir={pytester.path}", *CASE, "--moeperf-gate", "auto",
            f"--benchmark-storage=file://{STATIC}", "--moeperf-verdict-json", str(verdict),
            "--moeperf-gate-ignore-gpu",  # the replay runs on the CPU; its cases say H200
            "--moeperf-results", str(pytester.path / f"{label}.jsonl"), *extra, "benchmarks")
        docs[label] = json.loads(verdict.read_text())
        assert docs[label]["benchmarks"], result.stdout.str()[-3000:]
    assert _verdicts(docs["xdist"]) == _verdicts(docs["plain"])
    # and the same as the CLI's: the committed run against the committed folder
    cli = GateRun(documents.load_documents(STATIC, all_runs=True), gate_config.GateConfig()).compare(documents.load_documents(HEAD))
    assert _verdicts(cli.to_json()) == _verdicts(docs["plain"])
    assert docs["plain"]["verdict"] != gate_verdicts.PASS  # one run of the 8 % slower decode: not passed either way
    assert (pytester.path / "xdist.merged.json").exists()  # no --benchmark-json: the default merged path
    from pytest_moeperf.measure import session

    assert session.MoeperfSession.measure_case.__name__ == "measure_case"  # the replay is gone again
