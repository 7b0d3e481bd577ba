"""Faults of the GPU side: CUDA OOM and compile failures, bad baselines for the gate, the GPU kind check,
contamination and power capping (with a fake NVML)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from pytest_moeperf.model.cases import Case
from pytest_moeperf.device.nvml import NvmlDevice
from pytest_moeperf.results.results_log import read_log
from pytest_moeperf.measure.measure import CaseRunner, MeasureSettings  # noqa: E402
from pytest_moeperf.measure.session import CaseFailed, MoeperfSession  # noqa: E402

from test_faults import FakeGpu, OTHER_PID, _cpu_options, _run_rounds, tiny_dense, use_pynvml
from bench_project import copy_benchmark


# --- CUDA OOM and compile failures ----------------------------------------------------------------

OOM_TEXT = "CUDA out of memory. Tried to allocate 253.12 GiB"


def test_oom_in_one_case_is_case_failed_and_the_session_goes_on(tmp_path, monkeypatch):
    original = CaseRunner.prime

    def prime(self):
        if self.case.context_tokens == 80:
            raise torch.OutOfMemoryError(OOM_TEXT + " (GPU 0; 139.8 GiB total capacity)\nmore detail")
        if self.case.context_tokens == 96:
            raise RuntimeError("inductor: compile failed\nlong dump")
        return original(self)

    monkeypatch.setattr(CaseRunner, "prime", prime)
    session = MoeperfSession(_cpu_options(tmp_path, moeperf_contexts="80,96,64", moeperf_dtype="fp32"))
    cases = session.options.cases()
    assert [c.context_tokens for c in cases] == [80, 96, 64]

    def run_rounds(target, rounds, warmup_rounds):
        for _ in range(rounds + warmup_rounds):
            target()

    with pytest.raises(CaseFailed) as oom:
        session.measure_case(cases[0], run_rounds)
    msg = str(oom.value)
    assert "\n" not in msg
    assert msg.startswith("CUDA out of memory") and "253.12 GiB" in msg
    with pytest.raises(CaseFailed) as comp:
        session.measure_case(cases[1], run_rounds)
    assert str(comp.value) == "RuntimeError: inductor: compile failed"
    info = session.measure_case(cases[2], run_rounds)  # the session goes on
    assert info["rounds"] == 3 and info["tpot_ms"] > 0
    session.release()


CONFTEST_FAULTS = """
    import torch
    from pytest_moeperf.measure import measure

    _prime = measure.CaseRunner.prime

    def prime(self):
        if self.case.context_tokens == 80:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 253.12 GiB (GPU 0)\\nmore")
        if self.case.context_tokens == 96:
            raise RuntimeError("inductor: compile failed\\nlong dump")
        return _prime(self)

    measure.CaseRunner.prime = prime
"""


def _run(pytester, *args, gate="off"):
    copy_benchmark(pytester.path)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--moeperf-gate", gate,
                                         "--moeperf-results", str(pytester.path / "r.jsonl"),
                                         "--moeperf-rounds", "3", "--moeperf-new-tokens", "4", *args, "benchmarks")


@pytest.mark.e2e
def test_oom_and_compile_failure_end_to_end(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the short summary line is cut to the terminal width
    pytester.makeconftest(CONFTEST_FAULTS)
    result = _run(pytester, "--moeperf-models", "tiny-dense", "--moeperf-contexts", "80,96,64")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines([
        "FAILED *test_generate[[]tiny-dense-c80-n4[]]*CUDA out of memory*253.12 GiB*",
        "FAILED *test_generate[[]tiny-dense-c96-n4[]]*RuntimeError: inductor: compile failed*",
    ], consecutive=False)
    assert "FAILED tiny-dense-c80-n4: CUDA out of memory" in out  # the moeperf summary
    records = read_log(str(pytester.path / "r.jsonl"))
    failed = [r for r in records if r["type"] == "failed"]
    cases = [r for r in records if r["type"] == "case"]
    assert [r["case"] for r in failed] == ["tiny-dense-c80-n4", "tiny-dense-c96-n4"]
    assert "CUDA out of memory" in failed[0]["error"] and "253.12 GiB" in failed[0]["error"]
    assert "\n" not in failed[0]["error"]
    assert failed[1]["error"] == "RuntimeError: inductor: compile failed"
    assert [r["benchmark"]["name"] for r in cases] == ["test_generate[tiny-dense-c64-n4]"]


# --- baselines for the gate -----------------------------------------------------------------------

@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["missing", "corrupt", "wrong-schema"])
def test_bad_baseline_file_is_a_one_line_usage_error(pytester, kind):
    path = pytester.path / f"baseline-{kind}.json"
    if kind == "corrupt":
        path.write_text('{"benchmarks": [', encoding="utf-8")
    elif kind == "wrong-schema":
        path.write_text(json.dumps({"results": [1, 2]}), encoding="utf-8")
    result = _run(pytester, "--moeperf-models", "tiny-dense", "--moeperf-contexts", "64", gate=str(path))
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "Traceback" not in out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and path.name in errors[0], out
    assert not (pytester.path / "r.jsonl").exists()


@pytest.mark.e2e
def test_no_baseline_yet_passes_and_says_so(pytester):
    result = _run(pytester, "--moeperf-models", "tiny-dense", "--moeperf-contexts", "64",
                  "--benchmark-storage", f"file://{pytester.path / 'storage'}", gate="auto")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert "no baseline" in result.stdout.str()


# --- the GPU kind check, contamination and power capping (shown on the H200 too) ------------------

@pytest.mark.parametrize(("kind", "ok"), [("h200", True), ("h100", False), ("a100", False)])
def test_gpu_kind_check_names_the_gpu_found(use_pynvml, kind, ok):
    from pytest_moeperf.measure.session import check_gpu_kind

    use_pynvml()  # the fake names itself "NVIDIA H200"
    if ok:
        assert check_gpu_kind(kind) == "NVIDIA H200"
    else:
        with pytest.raises(ValueError) as e:
            check_gpu_kind(kind)
        msg = str(e.value)
        assert "'NVIDIA H200'" in msg and "--gpu h200" in msg and "\n" not in msg


def test_gpu_kind_check_without_nvml_says_use_cpu(use_pynvml):
    from pytest_moeperf.measure.session import check_gpu_kind

    use_pynvml(init_error="NVML Shared Library Not Found")
    with pytest.raises(ValueError, match="no NVIDIA GPU found through NVML.*run with --gpu cpu"):
        check_gpu_kind("h200")


def test_power_policy_violation_is_power_capped_not_throttled(tiny_dense):
    runner = CaseRunner(tiny_dense, Case("tiny-dense", 64, 4, dtype="fp32"), MeasureSettings(rounds=2, warmup_rounds=0),
                        gpu=FakeGpu(power_ns=5_000_000), energy_meter=None, energy_unavailable="test")
    runner.prime()
    _run_rounds(runner, 2)
    info = runner.extra_info("cpu")
    assert info["power_capped_rounds"] == 2 and info["throttled_rounds"] == 0


def test_nvml_device_throttle_mask_names_the_slowdown_bits(use_pynvml):
    mod = use_pynvml()
    assert NvmlDevice().throttle_mask() == 0x68  # the fake names no bits: thermal (SW, HW) and HW slowdown
    mod.nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
    assert NvmlDevice().throttle_mask() == 0x80


def test_contaminated_case_prints_a_warning():
    from pytest_moeperf.model.cases import Case as C
    from pytest_moeperf.results.summary import render_summary

    info = {"ttft_ms": 1.0, "contaminated": True, "other_gpu_processes": [{"pid": OTHER_PID}], "throttled_rounds": 2}
    text = render_summary([(C("tiny-dense", 64, 4), info)], [])
    assert "WARNING: other processes used the GPU during tiny-dense-c64-n4: figures contaminated" in text
    assert "WARNING: clock throttling during tiny-dense-c64-n4 (2 rounds)" in text
