"""Run a plan of benchmark steps on a GPU box, in lanes (one GPU each), surviving time limits.

    setsid nohup python -m pytest_moeperf plan tools/plans/gate10.plan OUT > OUT.runner.log 2>&1 &

(``python3 tools/gpu_plan.py PLAN OUT`` runs the same, from a checkout without the package installed.)

A plan is a text file, one step a line (``#`` starts a comment)::

    LANE  NAME  TIMEOUT_S  [VAR=VALUE ...] COMMAND ...
    wait                                  # a barrier: every earlier step has ended

LANE is what ``CUDA_VISIBLE_DEVICES`` is set to for the step (``0``, ``1``, ``0,1``; ``-``
leaves it alone). Steps of one lane run in order; lanes run side by side. A COMMAND that
starts with ``pytest`` runs ``python -m pytest benchmarks/ -p no:cacheprovider -q
--moeperf-gate off --moeperf-results OUT/NAME.jsonl --moeperf-resume`` plus its arguments (only the
files it names when it names some under ``benchmarks/``: ``benchmarks/`` alone holds the serving
sweeps too, which on a GPU load every model at 1 to 64 users), and
``OUT/NAME.json`` (a pytest-benchmark document) is written from that log afterwards, also after
a timeout. Any other command runs as written through bash. ``{OUT}`` is replaced by OUT in both.
Each step logs to ``OUT/NAME.log``; one that exits 0 leaves ``OUT/NAME.done``.

Run the same plan into the same OUT again (after a lease ran out, a crash, a timeout) and the
finished steps are skipped while a pytest step resumes: its results log keeps every finished
case, and ``--moeperf-resume`` measures only the missing ones. ``OUT/DONE`` marks the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PYTEST = ["-m", "pytest", "benchmarks/", "-p", "no:cacheprovider", "-q", "--moeperf-gate", "off"]


@dataclass(frozen=True)
class Step:
    lane: str
    name: str
    timeout_s: int
    env: dict
    argv: list  # after the VAR=VALUE words
    shell: str = ""  # the same, as written (redirections, pipes), for a non-pytest command


def parse_plan(text: str) -> list[list[Step]]:
    """Stages (separated by ``wait``) of steps; ValueError naming the line for a bad one."""
    stages: list[list[Step]] = [[]]
    names = set()
    for n, raw in enumerate(text.splitlines(), 1):
        words = shlex.split(raw, comments=True)
        if not words:
            continue
        if words == ["wait"]:
            stages.append([])
            continue
        if len(words) < 4 or not words[2].isdigit():
            raise ValueError(f"plan line {n}: write LANE NAME TIMEOUT_S COMMAND..., e.g. 0 base1 240 pytest "
                             f"--moeperf-models gpt-oss-20b")
        lane, name, timeout = words[0], words[1], int(words[2])
        if name in names or "/" in name:
            raise ValueError(f"plan line {n}: step name {name!r} is used twice or holds a '/'")
        names.add(name)
        rest = words[3:]
        env = {}
        while rest and "=" in rest[0] and rest[0].split("=")[0].isidentifier():
            k, v = rest.pop(0).split("=", 1)
            env[k] = v
        if not rest:
            raise ValueError(f"plan line {n}: no command after the variables")
        shell = re.match(r"\s*\S+\s+\S+\s+\d+\s+(?:[A-Za-z_]\w*=\S*\s+)*(.*)$", raw).group(1)
        stages[-1].append(Step(lane, name, timeout, env, rest, shell))
    return [s for s in stages if s]


def command(step: Step, out: Path) -> list[str]:
    if step.argv[0] == "pytest":
        argv = [a.replace("{OUT}", str(out)) for a in step.argv]
        base = PYTEST if not any(a.startswith("benchmarks/") for a in argv[1:]) else [
            a for a in PYTEST if a != "benchmarks/"]  # a step that names its files runs only those
        return [sys.executable, *base, "--moeperf-results", str(out / f"{step.name}.jsonl"), "--moeperf-resume",
                *argv[1:]]
    return ["bash", "-c", step.shell.replace("{OUT}", shlex.quote(str(out)))]


def run_step(step: Step, out: Path) -> int:
    if (out / f"{step.name}.done").exists():
        return 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", **step.env}
    if step.lane != "-":
        env["CUDA_VISIBLE_DEVICES"] = step.lane
    t0 = time.time()
    with open(out / f"{step.name}.log", "a", encoding="utf-8") as log:
        try:
            rc = subprocess.run(command(step, out), env=env, stdout=log, stderr=subprocess.STDOUT,
                                timeout=step.timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = 124
            log.write(f"\n[gpu_plan] {step.name}: stopped after {step.timeout_s} s; run the plan again to resume\n")
    if step.argv[0] == "pytest" and (out / f"{step.name}.jsonl").exists():
        subprocess.run([sys.executable, "-m", "pytest_moeperf", "results", str(out / f"{step.name}.jsonl"),
                        "--json", str(out / f"{step.name}.json")], stdout=subprocess.DEVNULL)
    if rc == 0:
        (out / f"{step.name}.done").touch()
    with open(out / "steps.tsv", "a", encoding="utf-8") as f:  # what each step cost, for the next plan
        f.write(f"{step.name}\t{rc}\t{t0:.1f}\t{time.time() - t0:.1f}\n")
    return rc


def run_plan(stages: list[list[Step]], out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    codes: dict[str, int] = {}
    for stage in stages:
        lanes: dict[str, list[Step]] = {}
        for step in stage:
            lanes.setdefault(step.lane, []).append(step)

        def lane_run(steps: list[Step]) -> None:
            for s in steps:
                codes[s.name] = run_step(s, out)

        threads = [threading.Thread(target=lane_run, args=(steps,)) for steps in lanes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    (out / "DONE").write_text("".join(f"{k} {v}\n" for k, v in codes.items()), encoding="utf-8")
    return codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the plan file: LANE NAME TIMEOUT_S [VAR=VALUE ...] COMMAND per line, 'wait' a barrier")
    parser.add_argument("out", help="folder for the results logs, JSON documents, logs and done markers")


def run(args) -> int:
    """``python -m pytest_moeperf plan PLAN OUT``: 0 when every step is done, 1 when some is not, 2 for a bad plan."""
    try:
        stages = parse_plan(Path(args.plan).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    codes = run_plan(stages, Path(args.out))
    failed = [k for k, v in codes.items() if v]
    print(f"{len(codes) - len(failed)} of {len(codes)} steps done" + (f"; not done: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_moeperf plan", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
