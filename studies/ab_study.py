#!/usr/bin/env python3
"""Issue 25 on one GPU lease: the A/B command itself, three jobs, resumable (a finished job is skipped).

    setsid nohup python3 studies/ab_study.py /root/study > /root/study.log 2>&1 &

1. cache: --moeperf-static-cache fresh (A) vs reuse (B), 2 pairs, no warm-up run: does one cache reset in
   place change the level or the spread? The mode with the smaller mean within-run CV of tpot_ms is used next.
2. slow10: the same settings both sides, B with studies/slowdown_plugin.py's GPU spin per decode step
   (SLOWDOWN_GPU_MS, default 1.1 ms: about +10 % of a ~10.4 ms step), the command's defaults
   (1 warm-up run a side, 3..6 pairs), budget 9 minutes.
3. aa: same code and settings both sides, no warm-up run, 3..6 pairs, budget 7 minutes.
Not part of the product; the committed outputs are in baselines/h200-runs/<date>-ab/.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASE = ["benchmarks/test_deployment.py", "--gpu", os.environ.get("STUDY_GPU", "auto"), "--moeperf-models", "gpt-oss-20b",
        "--moeperf-contexts", "2048", "--moeperf-new-tokens", "64", "--moeperf-backend", "static",
        "--moeperf-rounds", "20", "--moeperf-energy-windows", "1", "-q"]


def ab(out: Path, name: str, rule: list[str], a_args: str, b_args: str, b_env: list[str] = ()) -> dict | None:
    where = out / name
    if (where / "ab.json").is_file():
        return json.loads((where / "ab.json").read_text())
    if where.exists():  # a cut job: start it again in a new folder, keep the old one
        where.rename(out / f"{name}.cut{len(list(out.glob(name + '.cut*')))}")
    cmd = [sys.executable, "-m", "pytest_moeperf", "ab", "--a", "WORKTREE", "--b", "WORKTREE", "-o", str(where), *rule,
           "--a-args", a_args, "--b-args", b_args, "-v"]
    for e in b_env:
        cmd += ["--b-env", e]
    print("$", " ".join(cmd), flush=True)
    code = subprocess.call(cmd + ["--", *CASE])
    print(f"{name}: exit {code}", flush=True)
    return json.loads((where / "ab.json").read_text()) if (where / "ab.json").is_file() else None


def within_cv(job: Path, side: str) -> float | None:
    cvs = []
    for f in sorted((job / "runs").glob(f"*-pair*-{side}.json")):
        for b in json.loads(f.read_text())["benchmarks"]:
            xs = b["extra_info"]["samples"]["tpot_ms"]
            cvs.append(statistics.stdev(xs) / statistics.mean(xs))
    return statistics.mean(cvs) if cvs else None


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ab(out, "cache", ["--warmup-runs", "0", "--min-pairs", "2", "--max-pairs", "2"],
       "--moeperf-static-cache fresh", "--moeperf-static-cache reuse")
    cv_fresh, cv_reuse = within_cv(out / "cache", "A"), within_cv(out / "cache", "B")
    mode = "reuse" if (cv_reuse is not None and (cv_fresh is None or cv_reuse <= cv_fresh)) else "fresh"
    print(f"within-run CV of tpot_ms: fresh {cv_fresh}, reuse {cv_reuse}: next jobs use {mode}", flush=True)
    (out / "mode.txt").write_text(f"{mode} fresh_cv={cv_fresh} reuse_cv={cv_reuse}\n")
    opt = f"--moeperf-static-cache {mode}"
    ms = os.environ.get("SLOWDOWN_GPU_MS", "1.1")
    ab(out, "slow10", ["--min-pairs", "3", "--max-pairs", "6", "--budget-min", "9"],
       opt, f"{opt} -p studies.slowdown_plugin", [f"SLOWDOWN_GPU_MS={ms}"])
    ab(out, "aa", ["--warmup-runs", "0", "--min-pairs", "3", "--max-pairs", "6", "--budget-min", "7"], opt, opt)
    (out / "DONE").write_text("done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
