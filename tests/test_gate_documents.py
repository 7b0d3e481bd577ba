"""The gate over whole documents: matching benchmarks, exit codes, loading files and folders, the pyproject
configuration, the renderers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_moeperf.results import documents
from pytest_moeperf.gate import config as gate_config
from pytest_moeperf.gate import gate_run
from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, PASS
from pytest_moeperf.gate.gate_render import render_benchmark_failure, render_markdown, render_text

from test_gate import CFG, bench, doc, extra, slow_pair


# -- documents -------------------------------------------------------------------------

def test_compare_documents_matching_new_missing_and_exit_codes():
    same = extra({"tpot_ms": [10.0, 10.1, 9.9, 10.05]})
    base = doc(bench("test_a", same), bench("test_b", slow_pair()[0]["extra_info"]), bench("test_gone", same))
    head_b = bench("test_b", slow_pair()[1]["extra_info"])
    head_b["fullname"] = "moved/test_deployment.py::test_b"  # name fallback
    head = doc(bench("test_a", same), head_b, bench("test_new", same))
    result = gate_run.compare_documents([base], head, CFG)
    by = {b.name: b for b in result.benchmarks}
    assert by["test_a"].verdict == PASS and by["test_b"].verdict == FAIL
    assert by["test_new"].status == "new" and by["test_new"].verdict == PASS
    assert result.missing == ("benchmarks/test_deployment.py::test_gone",)
    assert result.verdict == FAIL and result.exit_code(False) == 1
    json.dumps(result.to_json(), allow_nan=False)


def test_exit_code_strict_for_inconclusive():
    base, head = slow_pair(throttled=2)
    result = gate_run.compare_documents([doc(base)], doc(head), CFG)
    assert result.verdict == INCONCLUSIVE
    assert result.exit_code(False) == 0 and result.exit_code(True) == 1


def test_gpu_mismatch_is_one_line_and_can_be_ignored():
    base, head = doc(bench(), gpu="NVIDIA H100 80GB HBM3"), doc(bench(), gpu="NVIDIA H200")
    with pytest.raises(gate_config.GpuMismatchError) as err:
        gate_run.compare_documents([base], head, CFG)
    msg = str(err.value)
    assert "\n" not in msg and "NVIDIA H100" in msg and "baselines/h200" in msg and "ignore-gpu" in msg
    assert gate_run.compare_documents([base], head, gate_config.load_gate_config(None, [], [], False, ignore_gpu=True))
    assert gate_run.compare_documents([doc(bench(), gpu=None)], head, CFG)  # a CPU baseline has no GPU to clash


def test_load_documents_file_folder_and_errors(tmp_path):
    store = tmp_path / "baselines" / "h200" / "Linux-CPython-3.11-64bit"
    store.mkdir(parents=True)
    for i in (1, 2):
        (store / f"000{i}_abc.json").write_text(json.dumps(doc(bench(f"test_{i}"))))
    docs = documents.load_documents(tmp_path / "baselines" / "h200")
    assert [d["benchmarks"][0]["name"] for d in docs] == ["test_2"]
    assert len(documents.load_documents(tmp_path / "baselines", all_runs=True)) == 2
    assert docs[0][documents.SOURCE_KEY].endswith("0002_abc.json")

    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "wrong.json").write_text(json.dumps({"benchmarks": "nope"}))
    (tmp_path / "empty").mkdir()
    for path, words in ((tmp_path / "absent.json", "no such file"), (tmp_path / "bad.json", "not JSON"),
                        (tmp_path / "wrong.json", "not a pytest-benchmark JSON"), (tmp_path / "empty", "no *.json")):
        with pytest.raises(gate_config.BaselineError) as err:
            documents.load_documents(path)
        assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_storage_path():
    assert str(documents.storage_path("file://./.benchmarks")) == ".benchmarks"
    assert str(documents.storage_path("baselines/h200")) == "baselines/h200"
    assert documents.storage_path("elasticsearch+http://host/") is None


# -- configuration ---------------------------------------------------------------------

# The defaults themselves: tests/test_schema.py (registry = gate = docs/gate.md's table).


def test_load_gate_config_from_pyproject_and_overrides(tmp_path):
    py = tmp_path / "pyproject.toml"
    py.write_text("[tool.moeperf.gate]\n"
                  "thresholds = {latency = 6.0, tpot_ms = 4.0, energy_j = 10}\n"
                  "alpha = 0.01\nmemory_tolerance_pct = 3.0\nmemory_tolerance_bytes = 1048576\n"
                  "allow = [\"energy_j\"]\n")
    cfg = gate_config.load_gate_config(str(py), ["ttft_ms=7.5%", "throughput=9"], ["tpot_ms@*gpt-oss*"], True)
    assert cfg.threshold_pct("tpot_ms") == 4.0          # metric beats its kind
    assert cfg.threshold_pct("itl_ms_p50") == 6.0       # kind from the file
    assert cfg.threshold_pct("ttft_ms") == 7.5          # CLI beats file
    assert cfg.threshold_pct("decode_tokens_per_s") == 9.0
    assert cfg.threshold_pct("energy_j") == 10.0
    assert cfg.threshold_pct("weights_bytes") == 3.0
    assert cfg.alpha == 0.01 and cfg.memory_tolerance_bytes == 1048576 and cfg.strict
    assert cfg.allow == ("energy_j", "tpot_ms@*gpt-oss*")


def test_run_drift_from_pyproject(tmp_path):
    py = tmp_path / "pyproject.toml"
    py.write_text("[tool.moeperf.gate]\nrun_drift_pct = 1.5\n")
    cfg = gate_config.load_gate_config(str(py), [], [], False)
    assert cfg.single_run_drift_pct["latency"] == 1.5 and cfg.single_run_drift_pct["energy"] == 1.0
    py.write_text("[tool.moeperf.gate]\nrun_drift_pct = {energy = 0.5, latency = 0}\n")
    cfg = gate_config.load_gate_config(str(py), [], [], False)
    assert cfg.single_run_drift_pct["energy"] == 0.5 and cfg.single_run_drift_pct["latency"] == 0.0
    assert cfg.single_run_drift_pct["throughput"] == 3.5
    py.write_text("[tool.moeperf.gate]\neager_run_drift_pct = 9\n")
    cfg = gate_config.load_gate_config(str(py), [], [], False)
    assert cfg.eager_run_drift_pct["latency"] == 9.0 and cfg.eager_run_drift_pct["energy"] == 12.0
    assert cfg.single_run_drift_pct["latency"] == 3.5


@pytest.mark.parametrize(("body", "words"), [
    ("thresholds = {tpot = 5}", "unknown metric 'tpot'"),
    ("thresholds = {tpot_ms = -1}", "positive percent"),
    ("thresholds = {tpot_ms = \"fast\"}", "not a number"),
    ("thresholds = 5", "must be a table"),
    ("alpha = 0.9", "alpha"),
    ("alpha = true", "alpha"),
    ("memory_tolerance_bytes = -5", "non-negative integer"),
    ("allow = [\"nope\"]", "unknown metric 'nope'"),
    ("allow = \"tpot_ms\"", "list of strings"),
    ("treshold = 1", "unknown key(s) treshold"),
    ("strict = 1", "true or false"),
    ("run_drift_pct = -1", "percentage from 0"),
    ("run_drift_pct = {speed = 1}", "unknown kind 'speed'"),
    ("eager_run_drift_pct = 100", "percentage from 0"),
    ("alpha = ", "not valid TOML"),
])
def test_bad_pyproject_values(tmp_path, body, words):
    py = tmp_path / "pyproject.toml"
    py.write_text(f"[tool.moeperf.gate]\n{body}\n")
    with pytest.raises(ValueError) as err:
        gate_config.load_gate_config(str(py), [], [], False)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("overrides", "allow", "words"), [
    (["tpot_ms"], [], "METRIC=PCT"), (["tpot_ms=0"], [], "positive"), (["bogus=5"], [], "unknown metric"),
    (["=5"], [], "METRIC=PCT"), ([], ["tpot_ms@"], "empty benchmark glob"), ([], ["tpotms"], "unknown metric"),
])
def test_bad_overrides(overrides, allow, words):
    with pytest.raises(ValueError) as err:
        gate_config.load_gate_config(None, overrides, allow, False)
    assert words in str(err.value)


def test_missing_pyproject_named():
    with pytest.raises(ValueError, match="no such file"):
        gate_config.load_gate_config("/nonexistent/pyproject.toml", [], [], False)


def test_repo_pyproject_keeps_the_documented_defaults():
    # an entry in the repo's own [tool.moeperf.gate] would silently move every CI verdict away
    # from what docs/gate.md states; a bad entry raises here instead of in the GPU job
    assert gate_config.find_pyproject(__file__) == str(Path(__file__).resolve().parents[1] / "pyproject.toml")
    assert gate_config.load_gate_config(gate_config.find_pyproject(__file__)) == CFG


# -- rendering -------------------------------------------------------------------------

def test_renderers():
    base, head = slow_pair()
    result = gate_run.compare_documents([doc(base, bench("test_gone"))], doc(head, bench("test_new")), CFG)
    text = render_text(result)
    assert "FAIL" in text and "tpot_ms" in text and "missing:" in text and "new:" in text
    verbose = render_text(result, verbose=True)
    header = verbose.splitlines()[2 if result.baseline_sources else 1]
    assert "detectable %" in header
    assert "peak_allocated_bytes" in verbose
    md = render_markdown(result)
    assert "| benchmark | verdict |" in md and "FAIL" in md
    failure = render_benchmark_failure(result.benchmarks[0])
    assert failure.startswith("moeperf gate: FAIL for benchmarks/test_deployment.py::test_generate[tiny]")
    assert "tpot_ms [ms/token]" in failure and "10 GiB" not in failure
