"""End-to-end tests of the pytest plugin: real pytest runs of benchmarks/test_deployment.py in a subprocess.

The plugin is loaded through its pytest11 entry point (the package is installed), so no ``-p``
is passed. Every run uses the tiny CPU presets with few rounds and tokens, the gate off and its
own results log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_moeperf.metrics import schema
from pytest_moeperf.results.log_document import to_benchmark_document
from pytest_moeperf.results.results_log import read_log

from bench_project import copy_benchmark

pytestmark = pytest.mark.e2e  # every test here runs a subprocess or pytester

FAST = ("--moeperf-rounds", "3", "--moeperf-new-tokens", "4")


def _run(pytester: pytest.Pytester, *args: str, gate: str = "off") -> pytest.RunResult:
    copy_benchmark(pytester.path)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--moeperf-gate", gate,
                                         "--moeperf-results", str(pytester.path / "r.jsonl"), *args,
                                         "benchmarks")


def _output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def _records(path: Path, kind: str) -> list[dict]:
    return [r for r in read_log(str(path)) if r.get("type") == kind]


# --- one real run with the default matrix (both tiny presets), shared by several tests ------------

@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """Default options (models, dtype, backend ...) on CPU; only the sizes are made small."""
    d = tmp_path_factory.mktemp("default_run")
    copy_benchmark(d)
    log, bjson = d / "r.jsonl", d / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--moeperf-gate", "off",
         "--moeperf-results", str(log), "--benchmark-json", str(bjson), *FAST, "--moeperf-contexts", "64",
         "benchmarks"],
        cwd=d, capture_output=True, text=True, timeout=300)
    return {"dir": d, "proc": proc, "log": log, "json": bjson, "out": proc.stdout + proc.stderr}


def test_default_run_writes_every_required_key(default_run):
    proc = default_run["proc"]
    assert proc.returncode == 0, default_run["out"][-4000:]
    doc = json.loads(default_run["json"].read_text())
    by_model = {b["extra_info"]["model"]: b for b in doc["benchmarks"]}
    assert set(by_model) == {"tiny-moe", "tiny-dense"}
    assert {b["name"] for b in doc["benchmarks"]} == {"test_generate[tiny-moe-c64-n4]",
                                                      "test_generate[tiny-dense-c64-n4]"}
    for name, bench in by_model.items():
        extra = bench["extra_info"]
        missing = [k for k in schema.REQUIRED_KEYS if k not in extra]
        assert not missing, f"{name}: missing {missing}"
        assert extra["context_tokens"] == 64
        assert extra["new_tokens"] == 4
        assert extra["rounds"] == 3 and bench["stats"]["rounds"] == 3
        assert extra["architecture"] == ("moe" if name == "tiny-moe" else "dense")
        assert extra["dtype"] == "bf16" and extra["backend"] == "eager" and extra["batch_size"] == 1
        assert extra["token_clock"] == "sync"  # auto on the CPU: a (no-op) sync and the host clock
        for k in ("ttft_ms", "tpot_ms", "decode_tokens_per_s", "e2e_ms_p50", "kv_cache_bytes", "peak_rss_bytes"):
            assert isinstance(extra[k], (int, float)) and extra[k] > 0, (name, k, extra[k])
        assert len(extra["samples"]["ttft_ms"]) == 3
        # energy: no GPU, so null with the reason
        for k in ("energy_j", "tokens_per_j", "j_per_1k_tokens", "ape_energy"):
            assert extra[k] is None, (name, k)
        assert extra["energy_unavailable"] and "no GPU" in extra["energy_unavailable"]
    assert doc["machine_info"]["moeperf_version"]
    assert doc["machine_info"]["gpu"] is None


def test_default_run_terminal_summary(default_run):
    out = default_run["out"]
    assert "moeperf deployment metrics" in out
    assert "tiny-moe-c64-n4" in out and "tiny-dense-c64-n4" in out
    assert "energy unavailable: no GPU" in out
    assert f"results log: {default_run['log']}" in out
    assert "2 passed" in out


def test_default_run_shows_progress_between_phases(default_run):
    """The progress lines (issue 19) come in phase order for each case, outside the captured output."""
    lines = [ln for ln in default_run["out"].splitlines() if ln.startswith("moeperf: ")]
    moe = [ln for ln in lines if "tiny-moe" in ln]
    expected = ["moeperf: case 1/2: tiny-moe-c64-n4", "moeperf: loading tiny-moe (bf16 on cpu, random weights)",
                "moeperf: loaded tiny-moe: ", "moeperf: priming tiny-moe-c64-n4: 2 discarded calls",
                "moeperf: primed tiny-moe-c64-n4: first call ",
                "moeperf: measured tiny-moe-c64-n4: 3 rounds, 0 energy windows in "]
    assert len(moe) == len(expected), lines
    for line, start in zip(moe, expected):
        assert line.startswith(start), (line, start)
    assert " kB of weights in " in moe[2]
    # the second case has an estimate of the time left, made from the first
    second = next(ln for ln in lines if ln.startswith("moeperf: case 2/2: tiny-dense-c64-n4"))
    assert "left" in second
    assert not [ln for ln in lines if "measuring" in ln]  # the rounds' start line is -v only


def test_results_command_lists_cases_and_writes_benchmark_document(default_run, tmp_path):
    out_json = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "pytest_moeperf", "results", str(default_run["log"]),
                           "--json", str(out_json)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "test_generate[tiny-moe-c64-n4]" in proc.stdout
    assert "test_generate[tiny-dense-c64-n4]" in proc.stdout
    assert "2 finished, 0 failed" in proc.stdout
    doc = json.loads(out_json.read_text())
    from pytest_moeperf.results.documents import validate_document

    validate_document(doc, str(out_json))  # the gate reads it like any pytest-benchmark run
    ran = json.loads(default_run["json"].read_text())
    assert sorted(b["fullname"] for b in doc["benchmarks"]) == sorted(b["fullname"] for b in ran["benchmarks"])
    for bench in doc["benchmarks"]:
        assert {"name", "fullname", "group", "params", "stats", "extra_info"} <= set(bench)
        assert bench["stats"]["rounds"] == 3 and len(bench["stats"]["data"]) == 3
        assert all(k in bench["extra_info"] for k in schema.REQUIRED_KEYS)
    assert doc["machine_info"]["moeperf_version"]


def test_results_log_with_torn_last_line_still_reads(default_run, tmp_path):
    torn = tmp_path / "torn.jsonl"
    text = default_run["log"].read_text()
    last_case = [ln for ln in text.splitlines() if '"type": "case"' in ln][-1]
    torn.write_text(text + last_case[: len(last_case) // 2])  # crash mid-write: half a line, no newline
    records = read_log(str(torn))
    assert len([r for r in records if r["type"] == "case"]) == 2
    assert len(to_benchmark_document(records)["benchmarks"]) == 2
    proc = subprocess.run([sys.executable, "-m", "pytest_moeperf", "results", str(torn)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "2 finished, 0 failed" in proc.stdout


# --- options -------------------------------------------------------------------------------------

def test_models_and_contexts_options_select_the_cases(pytester):
    result = _run(pytester, *FAST, "--moeperf-models", "tiny-dense", "--moeperf-contexts", "64,80")
    result.assert_outcomes(passed=2)
    out = _output(result)
    assert "test_generate[tiny-dense-c64-n4]" in out or "tiny-dense-c64-n4" in out
    logged = sorted(r["benchmark"]["name"] for r in _records(pytester.path / "r.jsonl", "case"))
    assert logged == ["test_generate[tiny-dense-c64-n4]", "test_generate[tiny-dense-c80-n4]"]
    ctx = {r["benchmark"]["name"]: r["benchmark"]["extra_info"]["context_tokens"]
           for r in _records(pytester.path / "r.jsonl", "case")}
    assert ctx == {"test_generate[tiny-dense-c64-n4]": 64, "test_generate[tiny-dense-c80-n4]": 80}


def test_context_valid_on_cpu_is_not_refused_by_gpu_defaults(pytester):
    # 4050 + 16 CPU-default new tokens fits tiny-dense's 4096 positions (the GPU default of 64 would not)
    result = _run(pytester, "--co", "-q", "--moeperf-models", "tiny-dense", "--moeperf-contexts", "4050")
    assert result.ret == 0, _output(result)
    result.stdout.fnmatch_lines(["*test_generate[[]tiny-dense-c4050-n16[]]*"])


# --- bad input: one line, no traceback, exit 4 ------------------------------------------------------

BAD_INPUT = [
    pytest.param(["--moeperf-models", "nope"], ["unknown model 'nope'", "tiny-moe", "tiny-dense", "gpt-oss-20b"],
                 id="unknown-model"),
    pytest.param(["--moeperf-contexts", "abc"], ["--moeperf-contexts", "'abc' is not a whole number"], id="contexts-abc"),
    pytest.param(["--moeperf-contexts", "0"], ["--moeperf-contexts", "0 is below the minimum of 1"], id="contexts-0"),
    pytest.param(["--moeperf-rounds", "-1"], ["--moeperf-rounds", "-1"], id="rounds-negative"),
    pytest.param(["--moeperf-dtype", "fp8"], ["--moeperf-dtype", "'fp8'", "bf16"], id="dtype-fp8"),
    pytest.param(["--moeperf-contexts", "5000"], ["5000", "max_position_embeddings of 4096", "tiny-"], id="context-too-long"),
    pytest.param(["--moeperf-models", "tiny-moe", "--moeperf-contexts", "5"],
                 ["--moeperf-contexts", "tiny-moe", "overhead"], id="context-below-template"),
    pytest.param(["--moeperf-energy-window-s", "0.5"], ["--moeperf-energy-window-s", ">= 1"], id="energy-window"),
    pytest.param(["--moeperf-token-clock", "event"], ["--moeperf-token-clock", "needs a CUDA device", "auto or sync"],
                 id="token-clock-event-on-cpu"),
    pytest.param(["--moeperf-token-clock", "tsc"], ["--moeperf-token-clock", "'tsc'", "auto, event, sync"],
                 id="token-clock-unknown"),
    pytest.param(["--gpu", "h100"], ["--gpu h100", "no NVIDIA GPU", "--gpu cpu"], id="gpu-absent"),
    pytest.param(["--gpu", "nonsense"], ["--gpu", "'nonsense'", "h200"], id="gpu-unknown"),
    pytest.param(["--moeperf-weights", "badspec"], ["--moeperf-weights", "'badspec'", "MODEL=PATH"], id="weights-spec"),
]


@pytest.mark.parametrize("args, expected", BAD_INPUT)
def test_bad_input_is_a_one_line_usage_error(pytester, args, expected):
    result = _run(pytester, *args)
    out = _output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "Traceback" not in out and "site-packages" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1, out
    for piece in expected:
        assert piece in errors[0], (piece, errors[0])
    assert not (pytester.path / "r.jsonl").exists()  # nothing was measured


# --- crash safety and hooks -----------------------------------------------------------------------

def test_crash_after_first_case_keeps_it_in_the_log(pytester):
    pytester.makeconftest("""
        import os

        def pytest_moeperf_case_finished(config, case, extra_info):
            os._exit(1)  # the process dies hard right after the first case is logged
    """)
    result = _run(pytester, *FAST, "--moeperf-models", "tiny-dense", "--moeperf-contexts", "64,80")
    assert result.ret == 1
    log = pytester.path / "r.jsonl"
    cases = _records(log, "case")
    assert [r["benchmark"]["name"] for r in cases] == ["test_generate[tiny-dense-c64-n4]"]
    assert cases[0]["benchmark"]["extra_info"]["tpot_ms"] > 0
    assert len(_records(log, "session")) == 1
    proc = subprocess.run([sys.executable, "-m", "pytest_moeperf", "results", str(log)],
                          capture_output=True, text=True, timeout=60)
    assert "1 finished, 0 failed" in proc.stdout


def test_modify_cases_and_case_failed_hooks(pytester):
    pytester.makeconftest("""
        from pytest_moeperf.measure import measure

        _prime = measure.CaseRunner.prime

        def prime(self):
            if self.case.context_tokens == 80:
                raise ValueError("deliberate failure")
            return _prime(self)

        measure.CaseRunner.prime = prime

        def pytest_moeperf_modify_cases(config, cases):
            cases[:] = [c for c in cases if c.model == "tiny-dense"]

        def pytest_moeperf_case_failed(config, case, error):
            with open("failed_hook.txt", "a") as fh:
                fh.write(f"{case.case_id}|{error}\\n")
    """)
    result = _run(pytester, *FAST, "--moeperf-contexts", "64,80")  # default models: tiny-moe dropped
    result.assert_outcomes(passed=1, failed=1)
    out = _output(result)
    assert "tiny-moe" not in out
    lines = (pytester.path / "failed_hook.txt").read_text().splitlines()
    assert lines == ["tiny-dense-c80-n4|ValueError: deliberate failure"]


# --- import hygiene -------------------------------------------------------------------------------

def test_loading_the_plugin_imports_no_torch_transformers_or_pynvml(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = textwrap.dedent(f"""
        import json, sys
        import pytest

        class Probe:
            def pytest_configure(self, config):
                self.state = config.pluginmanager.get_plugin("moeperf-state") is not None
                self.gate = config.pluginmanager.get_plugin("moeperf-gate") is not None

        probe = Probe()
        rc = pytest.main(["--co", "-q", "-p", "no:cacheprovider", {str(empty)!r}], plugins=[probe])
        print(json.dumps({{"rc": int(rc), "state": probe.state, "gate": probe.gate,
                          "plugin": "pytest_moeperf.plugin.plugin" in sys.modules,
                          "heavy": [m for m in ("torch", "transformers", "pynvml", "scipy", "httpx", "aiohttp") if m in sys.modules]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=empty, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTEST_ADDOPTS": ""})
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["plugin"] and info["state"] and info["gate"], info  # the plugin and the gate really loaded
    assert info["rc"] == pytest.ExitCode.NO_TESTS_COLLECTED
    assert info["heavy"] == [], info


def test_resume_after_a_crash_runs_only_the_missing_cases(pytester):
    conftest = pytester.makeconftest("""
        import os

        def pytest_moeperf_case_finished(config, case, extra_info):
            os._exit(1)
    """)
    args = (*FAST, "--moeperf-models", "tiny-dense", "--moeperf-contexts", "64,80")
    assert _run(pytester, *args).ret == 1  # crashed after the first case
    conftest.unlink()
    result = _run(pytester, *args, "--moeperf-resume")
    assert result.ret == 0
    out = _output(result)
    assert "1 passed, 1 deselected" in out
    assert "moeperf resume: 1 case(s) already finished" in out and "tiny-dense-c64-n4" in out
    log = pytester.path / "r.jsonl"
    names = sorted(r["benchmark"]["name"] for r in _records(log, "case"))
    assert names == ["test_generate[tiny-dense-c64-n4]", "test_generate[tiny-dense-c80-n4]"]


# --- real checkpoints by path ---------------------------------------------------------------------

def test_saved_checkpoints_of_both_architectures_benchmark_by_path(pytester, tiny_checkpoint):
    """The path every user with real weights takes: save_pretrained folders through --moeperf-weights.

    Both tiny architectures in one run, from a plain install (no extra): the checkpoint's own
    weights, tokenizer and chat template are what the case measures.
    """
    folders = {name: tiny_checkpoint(name) for name in ("tiny-moe", "tiny-dense")}
    bjson = pytester.path / "bench.json"
    result = _run(pytester, *FAST, "--moeperf-contexts", "64", "--benchmark-json", str(bjson),
                  *[a for name, path in folders.items() for a in ("--moeperf-weights", f"{name}={path}")])
    assert result.ret == 0, _output(result)[-4000:]
    doc = json.loads(bjson.read_text())
    by_model = {b["extra_info"]["model"]: b["extra_info"] for b in doc["benchmarks"]}
    assert set(by_model) == {"tiny-moe", "tiny-dense"}
    for name, extra in by_model.items():
        assert extra["weights"] == "checkpoint" and extra["checkpoint"] == str(folders[name]), extra
        assert extra["context_tokens"] == 64 and extra["ttft_ms"] > 0
        missing = [k for k in schema.REQUIRED_KEYS if k not in extra]
        assert not missing, f"{name}: missing {missing}"
