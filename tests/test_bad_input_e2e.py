"""Bad and odd inputs through pytest itself (issue 15): usage errors in-process (no model loads), and
one interrupted run of the tiny dense preset followed by resumes. The pure rules are in test_bad_input.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# In-process pytester runs restore sys.modules afterwards, and a C extension imported for the first
# time inside one (torch, numpy.fft, tokenizers) cannot be imported again: only runs that stop
# before collection (nothing heavy imported) run in-process; the others run in a subprocess.
from pytest_moeperf.gate import decision  # noqa: F401  imported here, not first inside a run
from pytest_moeperf.results import outputs  # noqa: F401
from pytest_moeperf.plugin import plugin  # noqa: F401
from pytest_moeperf.results.results_log import read_log

from bench_project import copy_benchmark

pytestmark = pytest.mark.e2e  # every test here runs a subprocess or pytester

FAST = ("--moeperf-rounds", "3", "--moeperf-new-tokens", "4", "--moeperf-models", "tiny-dense")


def _args(pytester, *args, gate="off"):
    copy_benchmark(pytester.path)
    return ("-p", "no:cacheprovider", "--moeperf-gate", gate, "--moeperf-results", str(pytester.path / "r.jsonl"),
            *args, "benchmarks")


def _out(result) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def _write_baseline(path: Path, names=("test_other_suite",), gpu=None) -> Path:
    doc = {"machine_info": {"gpu": {"name": gpu} if gpu else None}, "commit_info": {},
           "benchmarks": [{"name": n, "fullname": f"other/test_x.py::{n}", "extra_info": {"tpot_ms": 1.0}}
                          for n in names]}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _benchmark_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(p) for p in version("pytest-benchmark").split(".")[:2])


# pytest-benchmark 5.3 hands --benchmark-json over as a Path; 5.2 opens it itself while parsing
# (argparse's own error for a path it cannot open, the file created before any check)
PATH_53 = pytest.mark.skipif(_benchmark_version() < (5, 3), reason="pytest-benchmark < 5.3 opens --benchmark-json itself")

DUPLICATE_HOOK = """
def pytest_moeperf_modify_cases(config, cases):
    cases.append(cases[0])
"""
USAGE_ERRORS = [  # (args, conftest, pieces of the one ERROR line)
    pytest.param(["--moeperf-rounds", "2,5"], None, ["--moeperf-rounds", "takes one value"], id="rounds-list"),
    pytest.param(["--moeperf-contexts", "64,64"], None, ["--moeperf-contexts", "'64' is given twice"],
                 id="contexts-duplicate"),
    pytest.param(["--moeperf-models", "tiny-dense,tiny-dense"], None, ["--moeperf-models", "given twice"],
                 id="models-duplicate"),
    pytest.param(["--moeperf-dtype", ""], None, ["--moeperf-dtype: empty value"], id="dtype-empty"),
    pytest.param(["--gpu", ""], None, ["--gpu: empty value"], id="gpu-empty"),
    pytest.param(["--moeperf-results", ""], None, ["--moeperf-results: empty path"], id="results-empty"),
    pytest.param(["--moeperf-results", "README.md/r.jsonl"], None, ["--moeperf-results", "README.md is a file"],
                 id="results-parent-is-a-file"),
    pytest.param(["--moeperf-results", "."], None, ["--moeperf-results", "is a folder"], id="results-is-a-folder"),
    pytest.param(["--moeperf-gate", "auto", "--moeperf-verdict-json", "{log}"], None,
                 ["--moeperf-results and --moeperf-verdict-json both write"], id="verdict-json-is-the-log"),
    pytest.param(["--benchmark-json", "{log}"], None, ["--moeperf-results and --benchmark-json both write"],
                 id="benchmark-json-is-the-log"),
    pytest.param(["--moeperf-results", "out/r.jsonl", "--benchmark-json", "out/r.jsonl"], None,
                 ["--moeperf-results and --benchmark-json both write out/r.jsonl"], id="nested-benchmark-json-is-the-log",
                 marks=PATH_53),
    pytest.param(["--benchmark-json", "README.md/x.json"], None, ["--benchmark-json", "README.md is a file"],
                 id="benchmark-json-under-a-file", marks=PATH_53),
    pytest.param(["--moeperf-compile-cache", "README.md"], None,
                 ["--moeperf-compile-cache", "README.md is a file, not a folder"], id="compile-cache-is-a-file"),
    pytest.param(["--benchmark-save", "run", "--benchmark-storage", "file://README.md/store"], None,
                 ["--benchmark-storage", "README.md is a file, not a folder"], id="benchmark-save-storage-is-a-file"),
    pytest.param(["--moeperf-weights", "tiny-dense=README.md"], None, ["--moeperf-weights: tiny-dense=README.md: is a file"],
                 id="weights-is-a-file"),
    pytest.param(["--moeperf-weights", "tiny-dense=org/a", "--moeperf-weights", "tiny-dense=org/b"], None,
                 ["--moeperf-weights: tiny-dense is given twice"], id="weights-twice"),
    pytest.param(["--benchmark-disable"], None, ["--benchmark-disable", "record nothing"], id="benchmark-disable"),
    pytest.param([], DUPLICATE_HOOK, ["tiny-dense-c64-n4 appears twice"], id="hook-duplicates-a-case"),
    pytest.param(["--gpu", "cpu", "--moeperf-gate", "{h200}"], None, ["moeperf gate", "NVIDIA H200",
                                                                     "this run is on the CPU"],
                 id="h200-baseline-on-the-cpu"),
]


@pytest.mark.parametrize("args, conftest, expected", USAGE_ERRORS)
def test_bad_input_is_one_usage_error_line_before_anything_runs(pytester, args, conftest, expected):
    (pytester.path / "README.md").write_text("x")
    (pytester.path / "out").mkdir()
    h200 = _write_baseline(pytester.path / "h200.json", ("test_generate[tiny-dense-c64-n4]",), gpu="NVIDIA H200")
    if conftest:
        pytester.makeconftest(conftest)
    log = pytester.path / "r.jsonl"
    args = [a.format(log=log, h200=h200) for a in args]
    gate = args.pop(args.index("--moeperf-gate") + 1) if "--moeperf-gate" in args else "off"
    if "--moeperf-gate" in args:
        args.remove("--moeperf-gate")
    run = pytester.runpytest_subprocess if (conftest or "--benchmark-disable" in args) else pytester.runpytest_inprocess
    result = run(*_args(pytester, "--moeperf-contexts", "64", *FAST, *args, gate=gate))
    out = _out(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1, out
    for piece in expected:
        assert piece in errors[0], (piece, errors[0])
    assert not log.exists() or log.stat().st_size == 0  # nothing measured (5.2.3 opens --benchmark-json early)


INTERRUPT = """
from pytest_moeperf.measure import measure

_prime, _round = measure.CaseRunner.prime, measure.CaseRunner.round

def prime(self):
    if self.case.context_tokens == 80:
        raise RuntimeError("deliberate failure before the rounds\\nsecond line")
    return _prime(self)

def round(self, *args, **kwargs):
    if self.case.context_tokens == 96 and getattr(self, "_rounds_seen", 0) == 1:
        raise KeyboardInterrupt  # Ctrl-C in the middle of the case's rounds
    self._rounds_seen = getattr(self, "_rounds_seen", 0) + 1
    return _round(self, *args, **kwargs)

measure.CaseRunner.prime, measure.CaseRunner.round = prime, round
"""


def test_interrupted_run_then_resume(pytester):
    """c64 finishes, c80 fails before its rounds, Ctrl-C hits c96 mid-rounds; then resumes."""
    conftest = pytester.makeconftest(INTERRUPT)
    other_suite = _write_baseline(pytester.path / "other.json")
    bench_json, log = pytester.path / "bench.json", pytester.path / "r.jsonl"
    args = (*FAST, "--moeperf-contexts", "64,80,96")
    result = pytester.runpytest_subprocess(*_args(pytester, *args, "--benchmark-json", str(bench_json),
                                                  "--moeperf-verdict-json", "v.json", gate=str(other_suite)))
    out = _out(result)
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    # the failed case: printed once, no chained copy, no pytest-benchmark "fixture not used" warning
    # FAILURES + moeperf summary; pytest's own short summary line is left out: it is cut to the
    # terminal width except on CI (CI=true), so whether it holds the message depends on where it runs
    own = "\n".join(ln for ln in out.splitlines() if not ln.startswith("FAILED benchmarks/"))
    assert own.count("RuntimeError: deliberate failure before the rounds") == 2, out
    assert "During handling" not in out and "Benchmark fixture was not used" not in out, out
    # the interrupted case is in neither the benchmark JSON nor the log
    names = [b["param"] for b in json.loads(bench_json.read_text())["benchmarks"]]
    assert names == ["tiny-dense-c64-n4"], names
    records = read_log(str(log))
    assert [r["benchmark"]["param"] for r in records if r["type"] == "case"] == ["tiny-dense-c64-n4"]
    assert [r["case"] for r in records if r["type"] == "failed"] == ["tiny-dense-c80-n4"]
    # nothing in common with another suite's baseline: not a PASS
    assert json.loads((pytester.path / "v.json").read_text())["verdict"] == "NO-OVERLAP"
    assert "NO-OVERLAP: nothing was compared with the baseline" in out, out
    conftest.unlink()

    # resume: only c96 runs; against the other suite's baseline nothing is compared, which fails the run
    result = pytester.runpytest_subprocess(*_args(pytester, *FAST, "--moeperf-contexts", "64,96", "--moeperf-resume",
                                                  gate=str(other_suite)))
    out = _out(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED and "1 passed, 1 deselected" in out, out
    assert "moeperf gate: NO-OVERLAP" in out

    # resume of a finished run: exit 0, says so (was exit 5, "no tests ran")
    result = pytester.runpytest_subprocess(*_args(pytester, *FAST, "--moeperf-contexts", "64,96", "--moeperf-resume"))
    out = _out(result)
    assert result.ret == pytest.ExitCode.OK, out
    assert "moeperf resume: all 2 case(s) already finished" in out and "nothing left to run" in out, out
    # after a settings change the terminal says why logged cases run again: resume_plan's notes, printed
    # by the same pytest_terminal_summary line (test_bad_input_documents.py::test_resume_plan_says_why_logged_cases_are_measured_again)
