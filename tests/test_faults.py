"""Fault handling: NVML missing or failing, throttling, CUDA OOM, compile failures, bad baselines.

Faults that only a GPU produces are simulated: a fake ``Gpu`` (pytest_moeperf.device.gpu's interface,
on a fake clock) drives CaseRunner's energy windows and throttling; a fake ``pynvml`` module only
where NVML itself is under test (NvmlDevice's errors, identity, processes); OOM / compile errors
are raised from a patched ``CaseRunner.prime``. Measurements run the tiny presets on the CPU.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import types

import pytest

from pytest_moeperf.model.cases import Case
from pytest_moeperf.device.energy import EnergyMeter
from pytest_moeperf.device.nvml import EnergyUnavailable, NvmlDevice
from pytest_moeperf.device.gpu import NoGpu
from pytest_moeperf.measure.run_options import parse_options


torch = pytest.importorskip("torch")

from pytest_moeperf.measure.measure import CaseRunner, MeasureSettings  # noqa: E402
from pytest_moeperf.measure.session import MoeperfSession

OTHER_PID = os.getpid() + 1  # never ours: a fixed PID (4242) was this process once in a while, and was filtered out


# --- a fake pynvml ------------------------------------------------------------------------------

def fake_pynvml(watts: float = 100.0, thermal_step_ns: int = 0, init_error: str | None = None,
                energy_error: str | None = None, others=((OTHER_PID, 3 << 30),),
                clock=time.perf_counter) -> types.ModuleType:
    """A pynvml stand-in: energy counter = watts x elapsed ``clock`` time, a thermal violation counter
    that rises by ``thermal_step_ns`` per read, running processes (ours plus ``others``)."""
    m = types.ModuleType("pynvml")
    t0 = clock()
    state = {"thermal": 0}
    m.NVML_PERF_POLICY_POWER, m.NVML_PERF_POLICY_THERMAL = 0, 1
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 0, 2, 0

    def init():
        if init_error:
            raise RuntimeError(init_error)

    def total_energy(handle):
        if energy_error:
            raise RuntimeError(energy_error)
        return int(round(watts * 1000.0 * (clock() - t0)))  # mJ

    def violation(handle, policy):
        if policy == m.NVML_PERF_POLICY_THERMAL:
            state["thermal"] += thermal_step_ns
            return types.SimpleNamespace(violationTime=state["thermal"], referenceTime=0)
        return types.SimpleNamespace(violationTime=0, referenceTime=0)

    def compute_procs(handle):
        procs = [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=1 << 30)]
        return procs + [types.SimpleNamespace(pid=p, usedGpuMemory=b) for p, b in others]

    m.nvmlInit = init
    m.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    m.nvmlDeviceGetHandleByUUID = lambda u: ("handle", u)
    m.nvmlDeviceGetTotalEnergyConsumption = total_energy
    m.nvmlDeviceGetViolationStatus = violation
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0
    m.nvmlDeviceGetComputeRunningProcesses = compute_procs
    m.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    m.nvmlDeviceGetPowerUsage = lambda h: int(watts * 1000)
    m.nvmlDeviceGetUUID = lambda h: "GPU-fake"
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=141 << 30)
    m.nvmlSystemGetDriverVersion = lambda: "570.00"
    m.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12080
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    m.nvmlDeviceGetClockInfo = m.nvmlDeviceGetMaxClockInfo = lambda h, c: 1980
    m.nvmlDeviceGetTemperature = lambda h, s: 40
    m.nvmlDeviceGetPersistenceMode = lambda h: 1
    return m


@pytest.fixture
def use_pynvml(monkeypatch):
    def install(**kwargs):
        mod = fake_pynvml(**kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        return mod

    return install


# --- a fake Gpu (pytest_moeperf.device.gpu's interface): what CaseRunner sees of a GPU ----------------------

class FakeGpu(NoGpu):
    """A board drawing ``watts`` on a clock that moves only when a round ends (``step_s`` a round),
    with violation counters that rise by ``thermal_ns``/``power_ns`` at every read."""

    def __init__(self, watts=100.0, step_s=0.6, thermal_ns=0, power_ns=0):
        super().__init__()
        self.watts, self.step_s, self.now = watts, step_s, 0.0
        self.per_round = {"thermal": thermal_ns, "power": power_ns}
        self.violation = {"thermal": 0, "power": 0}

    def clock(self) -> float:
        return self.now

    def energy_mj(self) -> int:
        return int(round(self.watts * 1000.0 * self.now))

    def violation_ns(self) -> dict[str, int]:  # read before and after each round: rises per read
        for k, v in self.per_round.items():
            self.violation[k] += v
        return dict(self.violation)

    def clock_event_reasons(self) -> int:  # read once a round, after its generate(): the round ends
        self.now += self.step_s
        return 0


def test_no_gpu_has_no_counter_and_nothing_running():
    gpu = NoGpu()
    assert gpu.identity() == {"name": None, "uuid": None} and gpu.other_processes() == []
    with pytest.raises(EnergyUnavailable, match="no GPU"):
        EnergyMeter(gpu)


# --- NVML missing or failing -----------------------------------------------------------------------

def test_nvml_init_failure_is_energy_unavailable_with_the_reason(use_pynvml):
    use_pynvml(init_error="NVML Shared Library Not Found")
    with pytest.raises(EnergyUnavailable, match="NVML init failed: NVML Shared Library Not Found"):
        NvmlDevice()


def test_nvml_not_importable_is_energy_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(EnergyUnavailable, match="pynvml not importable"):
        NvmlDevice()


def test_energy_counter_failure_is_energy_unavailable(use_pynvml):
    use_pynvml(energy_error="Not Supported")
    dev = NvmlDevice()  # the device itself works
    with pytest.raises(EnergyUnavailable, match="total-energy counter unavailable: Not Supported"):
        EnergyMeter(dev)
    assert dev.identity()["name"] == "NVIDIA H200"


def _cpu_options(tmp_path, **over) -> object:
    raw = {"moeperf_gpu": "cpu", "moeperf_models": "tiny-dense", "moeperf_contexts": "64",
           "moeperf_new_tokens": "4", "moeperf_rounds": "3", "moeperf_results": str(tmp_path / "r.jsonl")}
    raw.update(over)
    return parse_options(raw.get, cuda_available=False)


def test_session_on_cuda_without_nvml_records_the_reason(use_pynvml, tmp_path):
    use_pynvml(init_error="Driver Not Loaded")
    s = MoeperfSession(dataclasses.replace(_cpu_options(tmp_path), device="cuda"))
    assert isinstance(s.gpu(), NoGpu) and s.energy_meter is None and s.gpu_identity() is None
    assert s.energy_unavailable == "EnergyUnavailable: NVML init failed: Driver Not Loaded"


def test_session_on_cuda_without_energy_counter_keeps_the_gpu(use_pynvml, tmp_path):
    use_pynvml(energy_error="Not Supported")
    s = MoeperfSession(dataclasses.replace(_cpu_options(tmp_path), device="cuda"))
    assert s.gpu() is not None  # health and processes still come from NVML
    assert s.energy_meter is None
    assert "total-energy counter unavailable: Not Supported" in s.energy_unavailable


# --- measurement with a fake GPU on the CPU tiny preset ---------------------------------------------

@pytest.fixture(scope="module")
def tiny_dense():
    from pytest_moeperf.model.loading import load_model

    return load_model("tiny-dense", device="cpu", dtype="fp32")


def _run_rounds(runner: CaseRunner, rounds: int) -> None:
    for _ in range(rounds):
        runner.round()


def test_energy_unavailable_still_measures_everything_else(tiny_dense):
    runner = CaseRunner(tiny_dense, Case("tiny-dense", 64, 4, dtype="fp32"), MeasureSettings(rounds=3, warmup_rounds=0),
                        energy_meter=None, energy_unavailable="NVML init failed: Driver Not Loaded")
    runner.prime()
    rounds = runner.plan_rounds()
    assert rounds == 3  # no meter: no rounds added for energy windows
    _run_rounds(runner, rounds)
    info = runner.extra_info("cpu")
    for k in ("energy_j", "tokens_per_j", "j_per_1k_tokens", "energy_j_cv", "avg_power_w", "ape_energy"):
        assert info[k] is None, k
    assert info["energy_unavailable"] == "NVML init failed: Driver Not Loaded"
    assert info["energy_windows"] == 0
    for k in ("ttft_ms", "tpot_ms", "itl_ms_p50", "decode_tokens_per_s", "e2e_ms_p50", "e2e_tokens_per_s",
              "kv_cache_bytes", "peak_rss_bytes", "ape_tpot", "tokens_per_s_per_gb"):
        assert info[k] is not None and info[k] > 0, k
    assert info["rounds"] == 3 and info["new_tokens"] == 4 and info["context_tokens"] == 64
    assert info["throttled_rounds"] == 0


def test_fake_gpu_energy_windows(tiny_dense):
    gpu = FakeGpu(watts=100.0, step_s=0.6)
    settings = MeasureSettings(rounds=6, energy_window_s=1.0, energy_windows=3)
    runner = CaseRunner(tiny_dense, Case("tiny-dense", 64, 4, dtype="fp32"), settings, gpu=gpu,
                        energy_meter=EnergyMeter(gpu, clock=gpu.clock))
    runner.prime()
    _run_rounds(runner, 6)  # a window closes at the first round boundary past 1 s: every 2 rounds
    info = runner.extra_info("cpu")
    assert info["energy_unavailable"] is None
    assert info["energy_windows"] == 3 and info["energy_window_s"] == [1.2, 1.2, 1.2]
    assert info["avg_power_w"] == pytest.approx(100.0)
    assert info["energy_j"] == pytest.approx(60.0)  # 100 W x 0.6 s a round
    assert info["tokens_per_j"] == pytest.approx(8 / 120.0) and info["j_per_1k_tokens"] == pytest.approx(15000.0)
    assert info["energy_j_cv"] == pytest.approx(0.0, abs=1e-9) and info["energy_j_ci95"] is not None
    assert info["ape_energy"] == pytest.approx(info["tokens_per_j"] / (tiny_dense.params.active / 1e9))
    assert info["samples"]["energy_j"] == pytest.approx([60.0] * 3)
    assert info["throttled_rounds"] == 0


class SteppingClock:
    """A clock for the energy meter: each read moves it ``step_s`` on; ``now`` reads without moving."""

    def __init__(self, step_s: float):
        self.step_s, self.now = step_s, 0.0

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


def test_nvml_energy_windows_on_a_stepping_clock(use_pynvml, tiny_dense):
    # The meter's clock moves 0.25 s a read (begin, one check a round, end): a window closes after
    # its 4th round at >= 1 s and spans 1.25 s of a 100 W counter, however busy the machine is.
    clock = SteppingClock(0.25)
    use_pynvml(watts=100.0, clock=lambda: clock.now)
    gpu = NvmlDevice()
    settings = MeasureSettings(rounds=8, warmup_rounds=0, energy_window_s=1.0, energy_windows=2, max_rounds=8)
    runner = CaseRunner(tiny_dense, Case("tiny-dense", 64, 4, dtype="fp32"), settings, gpu=gpu,
                        energy_meter=EnergyMeter(gpu, clock=clock))
    runner.prime()
    rounds = runner.plan_rounds()
    assert rounds == 8  # what windows need is planned from the priming calls' real time: capped at 8 here
    _run_rounds(runner, rounds)
    info = runner.extra_info("cpu")
    assert info["energy_unavailable"] is None
    assert info["energy_windows"] == 2
    assert info["energy_window_s"] == [1.25, 1.25]
    assert info["avg_power_w"] == pytest.approx(100.0)
    assert info["energy_j"] == pytest.approx(125.0 / 4)  # per round: 125 J a window over its 4 rounds
    assert info["tokens_per_j"] == pytest.approx(4 * 4 / 125.0)  # 4 rounds x 4 new tokens a window
    assert info["j_per_1k_tokens"] == pytest.approx(1000.0 * 125.0 / 16)
    assert info["energy_j_cv"] == pytest.approx(0.0) and info["energy_j_ci95"] is not None
    assert info["ape_energy"] > 0
    assert info["samples"]["energy_j"] == pytest.approx([125.0 / 4] * 2)
    assert info["throttled_rounds"] == 0


def test_fake_gpu_reports_other_processes(use_pynvml):
    use_pynvml(others=((OTHER_PID, 3 << 30), (OTHER_PID + 1, None)))
    procs = NvmlDevice().other_processes()
    assert procs == [{"pid": OTHER_PID, "used_memory_bytes": 3 << 30}, {"pid": OTHER_PID + 1, "used_memory_bytes": None}]
    assert all(p["pid"] != os.getpid() for p in procs)


def test_thermal_violation_marks_rounds_throttled_and_gate_says_inconclusive(tiny_dense):
    from pytest_moeperf.gate import config as gate_config
    from pytest_moeperf.gate import gate_run
    from pytest_moeperf.gate import verdicts as gate_verdicts

    gpu = FakeGpu(thermal_ns=1_000_000)
    runner = CaseRunner(tiny_dense, Case("tiny-dense", 64, 4, dtype="fp32"), MeasureSettings(rounds=3, warmup_rounds=0),
                        gpu=gpu, energy_meter=None, energy_unavailable="test")
    runner.prime()
    _run_rounds(runner, 3)
    info = runner.extra_info("cpu")
    assert info["throttled_rounds"] == 3
    assert info["samples"]["throttled"] == [True, True, True]

    def doc(scale: float, throttled: int) -> dict:
        tpot = [10.0 * scale * (1 + 0.002 * i) for i in range(10)]
        extra = {"tpot_ms": sorted(tpot)[5], "samples": {"tpot_ms": tpot}, "throttled_rounds": throttled}
        return {"machine_info": {}, "benchmarks": [{"name": "test_generate[tiny-dense-c64-n4]",
                                                    "fullname": "benchmarks/test_deployment.py::test_generate"
                                                                "[tiny-dense-c64-n4]", "extra_info": extra}]}

    cfg = gate_config.GateConfig()
    base = doc(1.0, 0)
    assert gate_run.compare_documents([base], doc(1.5, 0), cfg).verdict == gate_verdicts.FAIL  # a 50% slowdown
    res = gate_run.compare_documents([base], doc(1.5, info["throttled_rounds"]), cfg)
    assert res.verdict == gate_verdicts.INCONCLUSIVE
    assert "clock throttling in 3 rounds" in res.benchmarks[0].metrics[0].reason
