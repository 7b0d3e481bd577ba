"""python -m pytest_moeperf plan (parallel/plan.py; tools/gpu_plan.py runs it from a checkout): the reusable
GPU job runner (lanes, barriers, done markers, resume)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_moeperf.parallel import plan as gpu_plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.e2e
def test_pytest_steps_resume_their_own_results_log_and_carry_their_variables():
    (stage,) = gpu_plan.parse_plan("1 slow1 150 SLOWDOWN_GPU_MS=1 pytest --gpu h200 --moeperf-compile-cache {OUT}/cc\n")
    step = stage[0]
    assert (step.lane, step.name, step.timeout_s, step.env) == ("1", "slow1", 150, {"SLOWDOWN_GPU_MS": "1"})
    argv = gpu_plan.command(step, Path("/o"))
    assert argv[0] == sys.executable and argv[1:3] == ["-m", "pytest"]
    i = argv.index("--moeperf-results")
    assert argv[i + 1] == "/o/slow1.jsonl" and "--moeperf-resume" in argv
    assert argv[-4:] == ["--gpu", "h200", "--moeperf-compile-cache", "/o/cc"]


def test_a_step_naming_benchmark_files_runs_only_those():
    (stage,) = gpu_plan.parse_plan("0 a 60 pytest --gpu h200\n0 b 60 pytest benchmarks/test_deployment.py --gpu h200\n")
    whole, named = (gpu_plan.command(s, Path("/o")) for s in stage)
    assert "benchmarks/" in whole  # the default: the whole folder, serving sweeps included
    assert "benchmarks/" not in named and named.count("benchmarks/test_deployment.py") == 1


@pytest.mark.parametrize("line", ["0 a pytest", "0 a x pytest", "0 a 5 X=1"])
def test_bad_plan_line_names_the_line(line):
    with pytest.raises(ValueError, match="plan line 2"):
        gpu_plan.parse_plan("# comment\n" + line)


def test_the_committed_plans_parse():
    for plan in (ROOT / "tools" / "plans").glob("*.plan"):
        assert gpu_plan.parse_plan(plan.read_text())


def test_lanes_barrier_and_a_rerun_skips_what_finished(tmp_path):
    out = tmp_path / "o"
    plan = tmp_path / "p.plan"
    plan.write_text("0 a 30 echo a >> {OUT}/order\n"
                    "1 b 30 sh -c 'echo b >> {OUT}/order; test -e {OUT}/fixed'\n"
                    "wait\n"
                    "- c 30 echo c >> {OUT}/order\n")
    assert gpu_plan.main([str(plan), str(out)]) == 1  # b failed
    order = (out / "order").read_text().split()
    assert sorted(order[:2]) == ["a", "b"] and order[2] == "c"  # c ran after the barrier
    assert (out / "a.done").exists() and not (out / "b.done").exists()
    (out / "fixed").touch()
    assert gpu_plan.main([str(plan), str(out)]) == 0
    assert (out / "order").read_text().split()[3:] == ["b"]  # only the unfinished step ran again
    assert (out / "DONE").read_text().split() == ["a", "0", "b", "0", "c", "0"]


def test_the_plan_subcommand_runs_a_plan_and_refuses_a_bad_one_in_one_line(tmp_path, capsys):
    from pytest_moeperf.__main__ import main

    plan = tmp_path / "p.plan"
    plan.write_text("- a 30 echo a > {OUT}/a.txt\n")
    assert main(["plan", str(plan), str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "a.txt").read_text() == "a\n" and (tmp_path / "o" / "DONE").exists()
    assert capsys.readouterr().out == "1 of 1 steps done\n"
    plan.write_text("0 a pytest\n")
    assert main(["plan", str(plan), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "plan line 1" in err and err.count("\n") == 1
