#!/usr/bin/env python3
"""How often the A/B rule decides FAIL / PASS / INCONCLUSIVE, and in how many GPU minutes, from real runs.

Not part of the product: the numbers behind the A/B power table in
docs/evidence/ab-h200-2026-12-02.md (issue 25, item 5).
Each simulated run's level is a real same-code run's metric relative to its job's mean (JOB[:SIDES]
arguments: an ab job's folder and the sides run with the same code, A, B or AB (the default); e.g.
baselines/h200-runs/2026-12-02c-ab/{aa2,slow10:A,cache:B} on one H200 and
baselines/h200-runs/2026-12-03-aa/{aa3,aa4,aa5} on another: static backend, reused cache); B's is another
such draw times (1 + effect). Pairs are added as the ab runner adds them and each look asks
``pytest_moeperf.ab.paired.decide_ratios`` (the rule itself). Minutes: the warm-up runs and the pairs at
the run times measured in the same jobs.

    R=baselines/h200-runs/2026-12-02c-ab
    python studies/ab_power.py $R/aa2 $R/slow10:A $R/cache:B --effects 0,2,5,10 --trials 2000 --json power.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_moeperf.ab import paired  # noqa: E402
from pytest_moeperf.metrics import schema  # noqa: E402

def same_code_levels(jobs: list[str], metric: str) -> tuple[list[float], float, float]:
    """(relative run levels, median warm run seconds, median warm-up run seconds) over JOB[:SIDES] folders;
    each job's runs are taken relative to that job's mean (its board and session), their deviations
    scaled by sqrt(n / (n - 1)) so that the pool keeps the spread a job's own mean takes away."""
    rel, warm_s, cold_s = [], [], []
    for spec in jobs:
        folder, _, sides = spec.partition(":")
        vals = []
        for f in sorted((Path(folder) / "runs").glob("*.json")):
            doc = json.loads(f.read_text())
            ab = doc["commit_info"]["moeperf_ab"]
            if ab["side"] not in (sides or "AB"):
                continue
            bench = doc["benchmarks"][0]["extra_info"]
            (cold_s if bench["first_call_s"] > 50 else warm_s).append(ab["seconds"])
            if ab["pair"] > 0:
                vals.append(bench[metric])
        if not vals:
            raise SystemExit(f"{spec}: no measured runs (an ab job's folder, with runs/*.json)")
        mean, inflate = statistics.fmean(vals), (len(vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 1.0
        rel += [1 + (v / mean - 1) * inflate for v in vals]  # deviations from the job's own mean lose 1/n of the spread
    return rel, statistics.median(warm_s), statistics.median(cold_s) if cold_s else statistics.median(warm_s)


def trial(rng, rel, effect, metric, thr, alpha, min_pairs, max_pairs):
    ratios = []
    looks = max_pairs - min_pairs + 1
    for n in range(1, max_pairs + 1):
        a, b = rng.choice(rel), rng.choice(rel) * (1 + effect / 100)
        ratios.append(b / a)
        if n >= min_pairs:
            r = paired.decide_ratios(ratios, metric, thr, alpha=alpha, looks=looks)
            if r.outcome != paired.UNDECIDED:
                return r.verdict, r.outcome, n
    return paired.INCONCLUSIVE, paired.UNDECIDED, max_pairs


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("jobs", nargs="+", metavar="JOB[:SIDES]")
    p.add_argument("--metric", default="tpot_ms")
    p.add_argument("--effects", default="0,2,5,10")
    p.add_argument("--thresholds", default="2")
    p.add_argument("--max-pairs", default="8,12")
    p.add_argument("--min-pairs", type=int, default=3)
    p.add_argument("--alpha", type=float, default=paired.DEFAULT_ALPHA)
    p.add_argument("--warmup-runs", type=int, default=1)
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    metric = schema.METRICS_BY_KEY[a.metric]
    rel, warm_s, cold_s = same_code_levels(a.jobs, a.metric)
    rng = np.random.default_rng(a.seed)
    sd = statistics.stdev(rel) * 100
    print(f"{len(rel)} same-code runs, run-to-run CV {sd:.2f} %, warm run {warm_s:.0f} s, warm-up run {cold_s:.0f} s")
    rows = []
    for thr in (float(x) for x in a.thresholds.split(",")):
        for max_pairs in (int(x) for x in a.max_pairs.split(",")):
            for eff in (float(x) for x in a.effects.split(",")):
                out = [trial(rng, rel, eff, metric, thr, a.alpha, a.min_pairs, max_pairs) for _ in range(a.trials)]
                minutes = [(2 * a.warmup_runs * cold_s + 2 * n * warm_s) / 60 for _, _, n in out]
                decided = [m for (v, o, n), m in zip(out, minutes) if o != paired.UNDECIDED]
                row = {"threshold_pct": thr, "max_pairs": max_pairs, "effect_pct": eff, "trials": a.trials,
                       "fail": sum(v == paired.FAIL for v, _, _ in out) / a.trials,
                       "pass_same": sum(o == paired.SAME for _, o, _ in out) / a.trials,
                       "inconclusive": sum(o == paired.UNDECIDED for _, o, _ in out) / a.trials,
                       "median_minutes_to_decision": statistics.median(decided) if decided else None,
                       "median_minutes": statistics.median(minutes)}
                rows.append(row)
                print(f"thr {thr:g}% max {max_pairs:2d} pairs effect {eff:+4.0f}%: FAIL {row['fail']:.1%} "
                      f"PASS(same) {row['pass_same']:.1%} INCONCLUSIVE {row['inconclusive']:.1%}, median minutes "
                      f"to a decision {row['median_minutes_to_decision'] or float('nan'):.1f} (all: {row['median_minutes']:.1f})")
    if a.json:
        a.json.write_text(json.dumps({"runs": len(rel), "run_cv_pct": sd, "warm_run_s": warm_s, "warmup_run_s": cold_s,
                                      "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
