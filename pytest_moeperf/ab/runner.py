"""The A/B runner: two sides measured interleaved on one machine, one pytest process per run, until decided.

A side is a place to run pytest (a git worktree of a ref, or the working tree), a Python, extra pytest
arguments and environment. The runner makes ``warmup_runs`` discarded runs per side (they compile and
fill each side's caches), then pairs in ABBA or seeded random order; after each pair from
``min_pairs`` on it asks paired.decide and stops once decided, at ``max_pairs``, or when the next pair
would pass the budget. Every run's pytest-benchmark JSON is kept with the side, pair and order in its
``commit_info.moeperf_ab`` and each benchmark's ``extra_info.ab``.

Processes and clocks are handed in (``execute``, ``clock``), so tests drive it without a GPU or a wall clock.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_moeperf.ab import paired
from pytest_moeperf.ab.same_output import compare_outputs
from pytest_moeperf.measure.outputs_check import LOGITS_DIR_ENV

ORDERS = ("abba", "random")


class AbError(RuntimeError):
    """A run that could not be used; the message is one line and names the log to read."""


@dataclass(frozen=True)
class Side:
    label: str  # "A" (base) or "B" (head)
    cwd: Path
    ref: str | None = None  # the git ref measured (None: the working tree as it is)
    sha: str | None = None
    python: str = sys.executable
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"label": self.label, "ref": self.ref or "working tree", "sha": self.sha, "cwd": str(self.cwd),
                "python": self.python, "args": list(self.args), "env": dict(self.env)}


@dataclass(frozen=True)
class RunRecord:
    side: str
    pair: int  # 0: a warm-up run (discarded)
    order: int  # position in the job, from 1
    name: str
    path: str
    seconds: float


def pair_order(pair: int, order: str, rng: random.Random) -> tuple[str, str]:
    """Which side runs first in pair ``pair`` (from 1): ABBA alternates AB, BA, AB, ...; random flips a seeded coin."""
    if order == "abba":
        return ("A", "B") if pair % 2 == 1 else ("B", "A")
    return ("A", "B") if rng.random() < 0.5 else ("B", "A")


def pytest_command(side: Side, pytest_args: Sequence[str], json_path: Path, out_dir: Path) -> list[str]:
    """The run's command: the user's pytest arguments, the side's own, and where this run writes."""
    args = [*pytest_args, *side.args]
    extra = ["--benchmark-json", str(json_path), "-p", "no:cacheprovider"]
    given = " ".join(args)
    if "--moeperf-results" not in given:
        extra += ["--moeperf-results", str(json_path.with_suffix(".jsonl"))]
    if "--moeperf-gate" not in given:
        extra += ["--moeperf-gate", "off"]  # stored baselines are another question; the pairs decide here
    if "--moeperf-compile-cache" not in given:
        extra += ["--moeperf-compile-cache", str(out_dir / f"compile-cache-{side.label}")]
    return [side.python, "-m", "pytest", *args, *extra]


def run_pytest(side: Side, command: Sequence[str], log_path: Path, env: Mapping[str, str]) -> int:
    """One run as its own process, its output to log_path; returns the exit code."""
    full_env = {**os.environ, **env}
    if side.ref is not None:  # the ref's own package first, ahead of an installed (editable) copy
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(side.cwd), full_env.get("PYTHONPATH")]))
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.call(list(command), cwd=side.cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)


def annotate(json_path: Path, info: Mapping[str, Any]) -> dict:
    """Add the run's side, pair and order to its document (commit_info.moeperf_ab, each extra_info.ab); atomic."""
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    doc.setdefault("commit_info", {})["moeperf_ab"] = dict(info)
    for bench in doc.get("benchmarks") or []:
        bench.setdefault("extra_info", {})["ab"] = dict(info)
    tmp = json_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, json_path)
    return doc


@dataclass
class AbRunner:
    a: Side
    b: Side
    pytest_args: Sequence[str]
    out_dir: Path
    order: str = "abba"
    seed: int = 0
    warmup_runs: int = 1
    min_pairs: int = 3
    max_pairs: int = 8
    budget_s: float | None = None
    metrics: Sequence[str] | None = None
    thresholds_pct: Mapping[str, float] | None = None
    alpha: float = paired.DEFAULT_ALPHA
    execute: Callable[[Side, Sequence[str], Path, Mapping[str, str]], int] = run_pytest
    clock: Callable[[], float] = time.monotonic
    progress: Callable[[str], None] = lambda line: None
    runs: list[RunRecord] = field(default_factory=list)
    docs: dict[str, list[tuple[dict, Path]]] = field(default_factory=lambda: {"A": [], "B": []})

    @property
    def looks(self) -> int:
        return self.max_pairs - self.min_pairs + 1

    def _run(self, side: Side, pair: int) -> tuple[dict, Path]:
        order = len(self.runs) + 1
        name = f"{order:03d}-{'warmup' if pair == 0 else f'pair{pair:02d}'}-{side.label}"
        runs_dir = self.out_dir / "runs"
        runs_dir.mkdir(parents=True, exist_ok=True)
        json_path, log_path, logits = runs_dir / f"{name}.json", runs_dir / f"{name}.log", runs_dir / f"{name}.logits"
        command = pytest_command(side, self.pytest_args, json_path, self.out_dir)
        self.progress(f"ab: run {order} ({'warm-up' if pair == 0 else f'pair {pair}'}, side {side.label}) ...")
        t0 = self.clock()
        code = self.execute(side, command, log_path, {**side.env, LOGITS_DIR_ENV: str(logits)})
        seconds = self.clock() - t0
        if code != 0 or not json_path.is_file():
            raise AbError(f"run {name} (side {side.label}) exited {code}"
                          f"{'' if json_path.is_file() else ' without its JSON'}: read {log_path}")
        info = {"side": side.label, "pair": pair, "order": order, "ref": side.ref or "working tree", "sha": side.sha,
                "seconds": round(seconds, 3)}
        doc = annotate(json_path, info)
        self.runs.append(RunRecord(side.label, pair, order, name, str(json_path), seconds))
        self.progress(f"ab: run {order} done in {seconds:.0f} s")
        return doc, logits

    def run(self) -> dict:
        rng = random.Random(self.seed)
        start = self.clock()
        sides = {"A": self.a, "B": self.b}
        for _ in range(self.warmup_runs):
            for label in ("A", "B"):
                self._run(sides[label], 0)
        results: list[paired.PairedMetric] = []
        stopped, pair_times = "max-pairs", []
        for pair in range(1, self.max_pairs + 1):
            elapsed = self.clock() - start
            estimate = pair_times[-1] if pair_times else None  # the latest pair: the first may hold a cold compile
            if self.budget_s is not None and estimate is not None and elapsed + estimate > self.budget_s:
                stopped = "budget"
                break
            t0 = self.clock()
            for label in pair_order(pair, self.order, rng):
                self.docs[label].append(self._run(sides[label], pair))
            pair_times.append(self.clock() - t0)
            if pair >= self.min_pairs:
                results = self.decide()
                verdict = paired.overall(results)
                self.progress(f"ab: after {pair} pairs: {verdict}")
                if results and (verdict == paired.FAIL or verdict == paired.PASS):
                    stopped = "decided"
                    break
        if not results and len(self.docs["A"]) >= 2:
            results = self.decide()
        return self.summary(results, stopped, self.clock() - start)

    def decide(self) -> list[paired.PairedMetric]:
        pairs = [(a, b) for (a, _), (b, _) in zip(self.docs["A"], self.docs["B"])]
        return paired.decide(pairs, metrics=self.metrics, thresholds_pct=self.thresholds_pct, alpha=self.alpha,
                             looks=self.looks)

    def summary(self, results: Sequence[paired.PairedMetric], stopped: str, elapsed_s: float) -> dict:
        return {
            "version": 1,
            # nothing in common after 2+ pairs is NO-OVERLAP; fewer pairs decide nothing yet
            "verdict": paired.overall(results) if results else (
                "NO-OVERLAP" if min(len(self.docs["A"]), len(self.docs["B"])) >= 2 else paired.INCONCLUSIVE),
            "stopped": stopped,
            "pairs": min(len(self.docs["A"]), len(self.docs["B"])),
            "elapsed_s": round(elapsed_s, 3),
            "rule": {"alpha": self.alpha, "looks": self.looks, "min_pairs": self.min_pairs,
                     "max_pairs": self.max_pairs, "budget_s": self.budget_s, "order": self.order, "seed": self.seed,
                     "warmup_runs": self.warmup_runs},
            "sides": {"A": self.a.describe(), "B": self.b.describe()},
            "runs": [asdict(r) for r in self.runs],
            "metrics": [{k: v for k, v in asdict(r).items()} for r in results],
            "outputs": compare_outputs(self.docs["A"], self.docs["B"]),
        }
