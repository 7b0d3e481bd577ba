"""The A/B command: the paired rule (pure), the runner with handed-in processes and clock, the CLI's checks,
and end to end over two refs of a throwaway git repository (a real slowdown FAILs, same code never does)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.ab import paired
from pytest_moeperf.ab.ab_cli import parse_and_check
from pytest_moeperf.ab.runner import AbError, AbRunner, Side, pair_order, pytest_command
from pytest_moeperf.ab.same_output import compare_outputs, output_line
from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, PASS
from pytest_moeperf.measure.outputs_check import OutputRecord, first_difference, token_digest
from pytest_moeperf.metrics import schema

TPOT = schema.METRICS_BY_KEY["tpot_ms"]
THROUGHPUT = schema.METRICS_BY_KEY["output_tokens_per_s"]


# -- the rule ------------------------------------------------------------------------------------------------

def test_clear_slowdown_fails_and_clear_sameness_passes():
    slow = paired.decide_ratios([1.10, 1.11, 1.09, 1.10], TPOT, 2.0, looks=6)
    assert (slow.verdict, slow.outcome) == (FAIL, paired.WORSE)
    assert slow.ci_low_pct > 2.0
    same = paired.decide_ratios([1.001, 0.999, 1.0005, 0.9995, 1.0], TPOT, 2.0, looks=6)
    assert (same.verdict, same.outcome) == (PASS, paired.SAME)
    assert -2.0 < same.ci_low_pct <= same.ci_high_pct < 2.0


def test_direction_comes_from_the_registry():
    # fewer tokens per second is worse: a 10 % drop FAILs, a 10 % rise is "better"
    assert paired.decide_ratios([0.90, 0.91, 0.89, 0.90], THROUGHPUT, 2.0).outcome == paired.WORSE
    assert paired.decide_ratios([1.10, 1.11, 1.09, 1.10], THROUGHPUT, 2.0).outcome == paired.BETTER
    assert paired.decide_ratios([0.90, 0.91, 0.89, 0.90], TPOT, 2.0).outcome == paired.BETTER


def test_undecided_says_how_many_pairs_and_the_detectable_change():
    r = paired.decide_ratios([1.06, 0.99, 1.04], TPOT, 2.0, looks=6)
    assert r.verdict == INCONCLUSIVE and r.outcome == paired.UNDECIDED
    assert r.pairs_to_settle is not None and r.pairs_to_settle > 3
    assert r.mde_pct > 0
    assert len(r.line()) <= 120 and r.line().startswith("INCONCLUSIVE")


def test_one_pair_or_bad_values_are_inconclusive():
    assert paired.decide_ratios([1.5], TPOT, 2.0).verdict == INCONCLUSIVE
    r = paired.decide_ratios([1.5, float("nan"), -1.0, float("inf")], TPOT, 2.0)
    assert r.pairs == 1 and r.verdict == INCONCLUSIVE


def test_more_looks_widen_the_interval():
    ratios = [1.05, 1.02, 1.04, 1.03]
    one, six = paired.decide_ratios(ratios, TPOT, 2.0, looks=1), paired.decide_ratios(ratios, TPOT, 2.0, looks=6)
    assert six.ci_low_pct < one.ci_low_pct and six.ci_high_pct > one.ci_high_pct


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=2, max_size=12), st.integers(1, 10))
def test_swapping_the_sides_mirrors_the_outcome(ratios, looks):
    ab = paired.decide_ratios(ratios, TPOT, 2.0, looks=looks)
    ba = paired.decide_ratios([1 / r for r in ratios], TPOT, 2.0, looks=looks)
    mirror = {paired.WORSE: paired.BETTER, paired.BETTER: paired.WORSE, paired.SAME: paired.SAME,
              paired.UNDECIDED: paired.UNDECIDED}
    assert ba.outcome == mirror[ab.outcome]
    assert ab.ci_low_pct <= ab.change_pct <= ab.ci_high_pct


def _stop_at_first_decision(rng, sigma, effect, min_pairs=3, max_pairs=8, thr=2.0):
    ratios = []
    for n in range(1, max_pairs + 1):
        ratios.append(math.exp(rng.normal(math.log1p(effect), sigma)))
        if n >= min_pairs:
            r = paired.decide_ratios(ratios, TPOT, thr, looks=max_pairs - min_pairs + 1)
            if r.outcome != paired.UNDECIDED:
                return r.verdict
    return INCONCLUSIVE


def test_optional_stopping_keeps_false_fails_below_alpha():
    # a true change at the threshold (the worst case for a false FAIL), looked at after every pair
    rng = np.random.default_rng(7)
    trials = 800
    fails = sum(_stop_at_first_decision(rng, 0.03, 0.02) == FAIL for _ in range(trials))
    assert fails / trials <= paired.DEFAULT_ALPHA / 2
    fails_aa = sum(_stop_at_first_decision(rng, 0.03, 0.0) == FAIL for _ in range(trials))
    assert fails_aa / trials <= fails / trials  # no change at all FAILs less often than one at the threshold


def _doc(tpot: float, name: str = "test_generate[case]", tokens=(1, 2, 3)) -> dict:
    extra = {"tpot_ms": tpot, "itl_ms_p50": tpot, "output": {"digest": token_digest([tokens]), "tokens": list(tokens),
                                                            "rounds_agree": True}}
    return {"benchmarks": [{"name": name, "fullname": f"b.py::{name}", "extra_info": extra}], "commit_info": {}}


def test_decide_covers_every_common_benchmark_and_metric():
    pairs = [(_doc(10.0), _doc(12.0)), (_doc(10.1), _doc(12.1)), (_doc(9.9), _doc(11.9))]
    results = paired.decide(pairs, metrics=["tpot_ms", "itl_ms_p50", "ttft_ms"])
    assert {r.metric for r in results} == {"tpot_ms", "itl_ms_p50"}  # ttft_ms is in no run
    assert paired.overall(results) == FAIL
    assert paired.overall([]) == INCONCLUSIVE


def test_outputs_same_and_first_difference(tmp_path):
    np.save(tmp_path / "a.npy", np.array([1.0, 2.0], dtype="float32"))
    np.save(tmp_path / "b.npy", np.array([1.0, 2.5], dtype="float32"))
    da, db = _doc(10, tokens=(1, 2, 3, 4)), _doc(10, tokens=(1, 2, 9, 4))
    da["benchmarks"][0]["extra_info"]["output"]["logits_file"] = "a.npy"
    db["benchmarks"][0]["extra_info"]["output"]["logits_file"] = "b.npy"
    row, = compare_outputs([(da, tmp_path)], [(db, tmp_path)])
    assert not row["same_tokens"] and row["first_difference"] == 2
    assert row["logits_max_abs_diff"] == pytest.approx(0.5)
    assert "from token 2" in output_line(row)
    same, = compare_outputs([(da, None)], [(_doc(11, tokens=(1, 2, 3, 4)), None)])
    assert same["same_tokens"] and same["first_difference"] is None


def test_output_record_and_first_difference():
    rec = OutputRecord()
    rec.add([[5, 6, 7]])
    rec.add([[5, 6, 7]])
    assert rec.summary()["rounds_agree"] and rec.summary()["tokens"] == [5, 6, 7]
    rec.add([[5, 6, 8]])
    assert not rec.summary()["rounds_agree"]
    assert first_difference([1, 2], [1, 2, 3]) == 2 and first_difference([1], [1]) is None


# -- the runner, with processes and a clock handed in ---------------------------------------------------------

class FakeMachine:
    """Writes each run's JSON as pytest-benchmark would; side B is slower by ``factor``; every run takes 60 s."""

    def __init__(self, factor=1.25, fail_at=None):
        self.now, self.factor, self.calls, self.fail_at = 0.0, factor, [], fail_at

    def clock(self):
        return self.now

    def execute(self, side, command, log_path, env):
        self.calls.append(side.label)
        self.now += 60.0
        log_path.write_text("log\n")
        if self.fail_at == len(self.calls):
            return 1
        json_path = Path(command[command.index("--benchmark-json") + 1])
        jitter = 1 + 0.002 * (len(self.calls) % 3)
        json_path.write_text(json.dumps(_doc(10.0 * jitter * (self.factor if side.label == "B" else 1.0))))
        return 0


def _runner(tmp_path, machine, **kw):
    a, b = Side("A", tmp_path), Side("B", tmp_path, args=("-p", "slow"))
    return AbRunner(a, b, ["bench.py"], tmp_path / "out", execute=machine.execute, clock=machine.clock, **kw)


def test_runner_stops_once_decided_and_keeps_every_run(tmp_path):
    m = FakeMachine(factor=1.25)
    result = _runner(tmp_path, m, warmup_runs=1).run()
    assert result["verdict"] == FAIL and result["stopped"] == "decided" and result["pairs"] == 3
    # warm-ups A, B; then ABBA: AB, BA, AB
    assert m.calls == ["A", "B", "A", "B", "B", "A", "A", "B"]
    run = json.loads(Path(result["runs"][4]["path"]).read_text())
    assert run["commit_info"]["moeperf_ab"]["side"] == "B" and run["commit_info"]["moeperf_ab"]["pair"] == 2
    assert run["benchmarks"][0]["extra_info"]["ab"]["order"] == 5
    assert result["outputs"][0]["same_tokens"]


def test_runner_budget_stops_before_a_pair_that_would_pass_it(tmp_path):
    m = FakeMachine(factor=1.0005)
    result = _runner(tmp_path, m, warmup_runs=0, budget_s=5 * 60, max_pairs=8).run()
    # pairs take 120 s: after 2 pairs (240 s) a third would end at 360 s > 300 s
    assert result["stopped"] == "budget" and result["pairs"] == 2
    assert result["verdict"] == INCONCLUSIVE


def test_a_failed_run_names_its_log(tmp_path):
    with pytest.raises(AbError, match=r"run 002-pair01-B \(side B\) exited 1 without its JSON: read .*002-pair01-B.log"):
        _runner(tmp_path, FakeMachine(fail_at=2), warmup_runs=0).run()


def test_order_and_command():
    import random

    assert [pair_order(k, "abba", random.Random(0)) for k in (1, 2, 3)] == [("A", "B"), ("B", "A"), ("A", "B")]
    rng = random.Random(3)
    orders = {pair_order(k, "random", rng) for k in range(1, 40)}
    assert orders == {("A", "B"), ("B", "A")}
    cmd = pytest_command(Side("B", Path("."), args=("--moeperf-gate", "auto")), ["x.py"], Path("o/r.json"), Path("o"))
    assert cmd.count("--moeperf-gate") == 1 and "--moeperf-compile-cache" in cmd


@pytest.mark.parametrize("argv, message", [
    (["--max-pairs", "2", "--", "x"], "--max-pairs (2) must be >= --min-pairs (3)"),
    (["--min-pairs", "1", "--", "x"], "--min-pairs must be >= 2"),
    (["--threshold", "tpot_ms", "--", "x"], "--threshold: 'tpot_ms' is not KEY=PCT"),
    (["--metrics", "tpot", "--", "x"], "--metrics: unknown metric 'tpot'"),
    ([], "give the runs' pytest arguments after --"),
    (["--budget-min", "nan", "--", "x"], "--budget-min must be a number of minutes > 0"),
])
def test_bad_input_is_one_line(argv, message):
    with pytest.raises(ValueError) as exc:
        parse_and_check(argv)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_output_folder_must_be_new(tmp_path):
    (tmp_path / "ab.json").write_text("{}")
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        parse_and_check(["-o", str(tmp_path), "--", "x"])


# -- end to end: two refs of a throwaway git repository -----------------------------------------------------

BENCH = '''
import statistics
import time

PER_STEP_S = {per_step}


def test_decode(benchmark):
    cpu_ms = []

    def step():  # CPU work timed by the process's CPU clock: a loaded machine delays it, it does not lengthen it
        c0 = time.process_time()
        while time.process_time() - c0 < PER_STEP_S:
            pass
        cpu_ms.append((time.process_time() - c0) * 1000.0)

    benchmark.pedantic(step, rounds=5, iterations=1)
    benchmark.extra_info["tpot_ms"] = statistics.median(cpu_ms)
'''


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.e2e
def test_two_refs_slowdown_fails_same_code_does_not(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "test_bench.py").write_text(textwrap.dedent(BENCH.format(per_step=0.002)))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "tag", "base")
    (repo / "test_bench.py").write_text(textwrap.dedent(BENCH.format(per_step=0.008)))  # 4x slower
    _git(repo, "commit", "-qam", "slow")

    def ab(out, *argv):
        cmd = [sys.executable, "-m", "pytest_moeperf", "ab", *argv, "--warmup-runs", "0", "--min-pairs", "2",
               "--max-pairs", "2", "--metrics", "tpot_ms", "--threshold", "tpot_ms=50", "-o", str(tmp_path / out),
               "--", "test_bench.py", "-q"]
        return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)

    slow = ab("slow", "--a", "base", "--b", "main")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert slow.stdout.startswith("FAIL") and "tpot_ms" in slow.stdout
    result = json.loads((tmp_path / "slow" / "ab.json").read_text())
    assert result["verdict"] == FAIL and result["sides"]["A"]["ref"] == "base"
    assert len(result["runs"]) == 4 and not (tmp_path / "slow" / "worktrees" / "A").exists()
    same = ab("same", "--a", "base", "--b", "base")
    assert same.returncode == 0, same.stdout + same.stderr
    assert json.loads((tmp_path / "same" / "ab.json").read_text())["verdict"] != FAIL


# -- the reused static cache (measure/outputs_check.py) on this transformers ---------------------------------

@pytest.mark.filterwarnings("error::FutureWarning")  # the cache passed under the name this release takes
def test_reused_static_cache_generates_the_same_tokens_at_the_same_addresses():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pytest_moeperf.measure.outputs_check import ReusedStaticCache, cache_kwarg

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (1, 10))
    gen = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        fresh = model.generate(ids, cache_implementation="static", **gen)
        reused = ReusedStaticCache(model, ids.shape[1] + 6 - 1)
        import inspect

        assert cache_kwarg(model) in inspect.signature(type(model).forward).parameters
        first = model.generate(ids, **reused.kwargs(), **gen)
        ptrs = [lay.keys.data_ptr() for lay in reused.cache.layers]
        second = model.generate(ids, **reused.kwargs(), **gen)
    assert torch.equal(first, fresh) and torch.equal(second, fresh)  # reset in place: nothing left from round 1
    assert [lay.keys.data_ptr() for lay in reused.cache.layers] == ptrs


@pytest.mark.parametrize(("pairs", "text"), [(None, "at the threshold"), (7, "~7 pairs"), (100, "~100 pairs"),
                                             (30567, "> 100 pairs")])
def test_pairs_to_settle_text_caps_what_no_job_would_run(pairs, text):
    assert paired.settle_text(pairs) == text


def test_a_change_near_the_threshold_shows_no_five_digit_pair_count():
    ratios = [1.0195 * r for r in (0.99, 1.01, 1.0, 1.0)]  # +1.95 % against a 2 % threshold
    r = paired.decide_ratios(ratios, TPOT, 2.0)
    assert r.verdict == paired.INCONCLUSIVE and r.pairs_to_settle > 100
    assert "> 100 pairs" in r.line()
