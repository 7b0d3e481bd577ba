"""GPU clocks and temperature beside the rounds (device/gpu_state.py), and the time-based warm-up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moeperf.device.gpu import NoGpu
from pytest_moeperf.device.gpu_state import FIELDS, GpuState, summarize
from pytest_moeperf.measure.measure import MeasureSettings


class ClockedGpu(NoGpu):
    """A GPU whose SM clock and temperature follow a script, one value per read."""

    def __init__(self, sm, temps, fail=False):
        super().__init__()
        self.sm, self.temps, self.fail, self.reads = list(sm), list(temps), fail, 0

    def clock_state(self) -> dict:
        if self.fail:
            raise RuntimeError("NVML clock query failed")
        i = self.reads
        self.reads += 1
        return {"sm_clock_mhz": self.sm[i], "mem_clock_mhz": 3201, "temperature_c": self.temps[i]}


def test_read_keeps_numbers_and_drops_what_the_gpu_cannot_tell():
    assert GpuState.read(None) == GpuState()
    assert GpuState.read(NoGpu()) == GpuState()
    assert GpuState.read(ClockedGpu([], [], fail=True)) == GpuState()
    gpu = ClockedGpu([1980], [41])
    assert GpuState.read(gpu) == GpuState(1980.0, 3201.0, 41.0)


def test_summary_of_a_run_that_clocked_down():
    states = [GpuState(1980, 3201, 40), GpuState(1755, 3201, 52), GpuState(1830, None, 55)]
    s = summarize(states)
    assert s["sm_clock_mhz"] == [1980, 1755, 1830]
    assert s["sm_clock_mhz_p50"] == 1830 and s["sm_clock_mhz_min"] == 1755 and s["sm_clock_mhz_max"] == 1980
    assert s["mem_clock_mhz_p50"] == 3201
    assert (s["temperature_c_first"], s["temperature_c_last"], s["temperature_c_max"]) == (40, 55, 55)


def test_no_gpu_no_summary():
    assert summarize([]) is None
    assert summarize([GpuState(), GpuState()]) is None


@given(st.lists(st.tuples(*[st.one_of(st.none(), st.floats(0, 5000, allow_nan=False))] * 3), max_size=30))
def test_summary_bounds_hold_for_any_rounds(rows):
    states = [GpuState(*r) for r in rows]
    s = summarize(states)
    if s is None:
        assert all(v is None for r in rows for v in r)
        return
    for k in FIELDS:
        assert len(s[k]) == len(rows)
    for k in ("sm_clock_mhz", "mem_clock_mhz"):
        if s[f"{k}_p50"] is not None:
            assert s[f"{k}_min"] <= s[f"{k}_p50"] <= s[f"{k}_max"]


@pytest.fixture(scope="module")
def tiny_dense():
    pytest.importorskip("torch")
    from pytest_moeperf.model.loading import load_model

    return load_model("tiny-dense", device="cpu", dtype="fp32")


def _runner(loaded, settings, **kw):
    pytest.importorskip("torch")
    from pytest_moeperf.measure.measure import CaseRunner
    from pytest_moeperf.model.cases import Case

    return CaseRunner(loaded, Case("tiny-dense", 64, 4, dtype="fp32"), settings, **kw)


class FakeClock:
    """Moves ``step_s`` each time it is read: a call that 'takes' a fixed time, without waiting."""

    def __init__(self, step_s):
        self.step_s, self.t = step_s, 0.0

    def __call__(self):
        self.t += self.step_s
        return self.t


def test_rounds_carry_the_gpu_state_and_the_time_warm_up(tiny_dense):
    gpu = ClockedGpu([1980, 1965, 1950], [40, 42, 44])
    settings = MeasureSettings(rounds=3, energy_windows=0, warmup_s=1.0)
    runner = _runner(tiny_dense, settings, gpu=gpu, now=FakeClock(0.3))
    runner.prime()
    # the clock moves 0.3 s a read: reads at 0.3 (start), 0.6, 0.9, 1.2 -> three discarded calls
    assert runner.warm_up() == 3 and runner.warmup_calls == 3
    for _ in range(3):
        runner.round()
    info = runner.extra_info("cpu")
    assert info["warmup_s"] == 1.0 and info["warmup_calls"] == 3 and info["rounds"] == 3
    g = info["gpu_state"]
    assert g["sm_clock_mhz"] == [1980, 1965, 1950] and g["sm_clock_mhz_p50"] == 1965
    assert g["temperature_c_first"] == 40 and g["temperature_c_last"] == 44


def test_no_warm_up_by_default_and_no_gpu_state_on_the_cpu(tiny_dense):
    runner = _runner(tiny_dense, MeasureSettings(rounds=2, energy_windows=0), now=FakeClock(0.3))
    runner.prime()
    assert runner.warm_up() == 0
    runner.round()
    runner.round()
    info = runner.extra_info("cpu")
    assert info["warmup_calls"] == 0 and info["warmup_s"] == 0.0 and info["gpu_state"] is None


# --- the collector during the rounds (measure/host_gc.py) ------------------------------------------

def test_gc_watch_times_the_collections_inside_a_round_only():
    import gc

    from pytest_moeperf.measure.host_gc import GcWatch

    watch = GcWatch(now=FakeClock(0.004))  # each read moves 4 ms: a collection 'takes' 4 ms
    gc.collect()  # outside a round: not counted
    watch.round_started()
    gc.collect()
    gc.collect(0)
    watch.round_ended()
    watch.round_started()
    watch.round_ended()
    watch.close()
    gc.collect()  # after close: not counted, and the callback is gone
    s = watch.summary("on")
    assert s["collections"] == [2, 0] and s["full_collections"] == [1, 0]
    assert s["gc_ms"] == pytest.approx([8.0, 0.0]) and s["rounds_with_full_collection"] == 1
    assert watch._callback not in gc.callbacks


@pytest.mark.parametrize("policy", ["on", "freeze", "between-rounds"])
def test_gc_policy_is_undone_after_the_rounds(policy):
    import gc

    from pytest_moeperf.measure.host_gc import GcPolicy

    assert gc.isenabled() and gc.get_freeze_count() == 0
    p = GcPolicy(policy)
    p.apply()
    assert gc.isenabled() == (policy != "between-rounds")
    assert (gc.get_freeze_count() > 0) == (policy == "freeze")
    p.after_round()
    p.restore()
    p.restore()  # idempotent: the failure path and the normal path may both call it
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_unknown_gc_policy_names_the_choices():
    from pytest_moeperf.measure.host_gc import GcPolicy

    with pytest.raises(ValueError, match="choose one of on, freeze, between-rounds"):
        GcPolicy("off")


def test_rounds_record_the_collector_and_give_it_back(tiny_dense):
    import gc

    runner = _runner(tiny_dense, MeasureSettings(rounds=2, energy_windows=0, gc="between-rounds"))
    runner.prime()
    runner.round()
    assert not gc.isenabled()  # inside the measurement: no collection during a round
    runner.round()
    info = runner.extra_info("cpu")
    assert gc.isenabled()
    h = info["host_gc"]
    assert h["policy"] == "between-rounds" and len(h["gc_ms"]) == 2 and h["collections"] == [0, 0]


# --- long gaps inside a round (measure/round_gaps.py) ------------------------------------------------

def test_a_pause_shows_as_one_long_gap_at_its_token():
    from pytest_moeperf.measure.round_gaps import round_gaps

    stamps = [200.0 + 10.0 * i for i in range(64)]
    assert round_gaps(stamps) == {"max_gap_ms": pytest.approx(10.0), "max_gap_at_token": 2, "stall_ms": 0.0,
                                  "long_gaps": 0}
    paused = stamps[:30] + [s + 57.0 for s in stamps[30:]]  # 57 ms lost before token 31
    g = round_gaps(paused)
    assert g["max_gap_at_token"] == 31 and g["max_gap_ms"] == pytest.approx(67.0)
    assert g["stall_ms"] == pytest.approx(57.0) and g["long_gaps"] == 1
    assert round_gaps([5.0]) == {"max_gap_ms": None, "max_gap_at_token": None, "stall_ms": 0.0, "long_gaps": 0}


@given(st.lists(st.floats(0.1, 100, allow_nan=False), min_size=1, max_size=80),
       st.floats(0, 500, allow_nan=False), st.data())
def test_stall_is_never_negative_and_finds_a_large_pause(gaps, pause, data):
    from itertools import accumulate

    from pytest_moeperf.measure.round_gaps import round_gaps

    stamps = [0.0, *accumulate(gaps)]
    g = round_gaps(stamps)
    assert g["stall_ms"] >= 0 and 0 <= g["long_gaps"] <= len(gaps)
    assert g["max_gap_ms"] == pytest.approx(max(gaps))
    if len(gaps) >= 3 and pause > 3 * max(gaps):  # a pause far above every gap is counted, nearly whole
        at = data.draw(st.integers(0, len(gaps) - 1))
        bumped = gaps[:at] + [gaps[at] + pause] + gaps[at + 1:]
        h = round_gaps([0.0, *accumulate(bumped)])
        assert h["max_gap_at_token"] == at + 2 and h["stall_ms"] >= pause - max(gaps)
