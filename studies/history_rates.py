"""Detection and false-change rates of the history's change points on synthetic series.

Each trial is a series of run values (one per stored run, like a run's median tpot_ms) with
a step of a known size half way, or none. The run-to-run noise is the H200's: Gaussian at
CV 3.5 % and 4 % (docs/gate.md: static backend, gpt-oss-20b 2048/64), and "h200": the
relative deviations of the 8 measured same-code runs of baselines/h200-static (CV 4.0 %,
one run 9 % above the others) resampled with replacement. A change is *detected* when a
change point lies within 2 runs of the step and points the right way (a slower tpot_ms: a
regression); a *false change* is any other change point. Seeded: the same command gives
the same table.

    python studies/history_rates.py --trials 500 > table.md     # docs/evidence/history-h200-2026-12-02.md's table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_moeperf.history import history  # noqa: E402
from pytest_moeperf.metrics import schema

SHIFTS_PCT = (0.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0)
LENGTHS = (12, 24)
NOISES = ("gauss3.5", "gauss4", "h200")
TOLERANCE_RUNS = 2


def h200_deviations() -> np.ndarray:
    """Relative deviations of the committed same-code static runs' tpot_ms from their mean."""
    values = []
    for f in sorted((ROOT / "baselines" / "h200-static").rglob("*.json")):
        for b in json.loads(f.read_text())["benchmarks"]:
            values.append(b["extra_info"]["tpot_ms"])
    v = np.asarray(values, dtype=float)
    return v / v.mean() - 1.0


def series(rng: np.random.Generator, n: int, shift_pct: float, noise: str, devs: np.ndarray) -> np.ndarray:
    if noise == "h200":
        e = rng.choice(devs, size=n, replace=True)
    else:
        e = rng.standard_normal(n) * float(noise.removeprefix("gauss")) / 100.0
    level = np.where(np.arange(n) < n // 2, 1.0, 1.0 + shift_pct / 100.0)
    return 10.0 * level * (1.0 + e)


def trial(rng, n, shift_pct, noise, devs, max_pvalue, min_magnitude) -> tuple[bool, bool]:
    """(detected, any false change point) for one series."""
    metric = schema.METRICS_BY_KEY["tpot_ms"]
    x = series(rng, n, shift_pct, noise, devs)
    found = history.find_change_points(x.tolist(), max_pvalue, min_magnitude)
    detected, false = False, False
    for index, before, after, _p in found:
        near = shift_pct > 0 and abs(index - n // 2) <= TOLERANCE_RUNS
        right_way = (after > before) == (metric.direction == "lower")  # slower: tpot up
        if near and right_way and not detected:
            detected = True
        else:
            false = True
    return detected, false


def rates(trials: int, n: int, shift_pct: float, noise: str, seed: int = 0,
          max_pvalue: float = history.DEFAULT_MAX_PVALUE, min_magnitude: float = history.DEFAULT_MIN_MAGNITUDE,
          devs: np.ndarray | None = None) -> tuple[float, float]:
    """(detection rate, false-change rate) over ``trials`` seeded series."""
    devs = h200_deviations() if devs is None else devs
    rng = np.random.default_rng([seed, n, int(shift_pct * 10), NOISES.index(noise)])
    out = [trial(rng, n, shift_pct, noise, devs, max_pvalue, min_magnitude) for _ in range(trials)]
    return sum(d for d, _ in out) / trials, sum(f for _, f in out) / trials


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--max-pvalue", type=float, default=history.DEFAULT_MAX_PVALUE)
    ap.add_argument("--min-magnitude", type=float, default=history.DEFAULT_MIN_MAGNITUDE)
    args = ap.parse_args(argv)
    devs = h200_deviations()
    print(f"max p-value {args.max_pvalue}, min magnitude {args.min_magnitude}, {args.trials} series a cell, "
          f"step half way, detected within {TOLERANCE_RUNS} runs; h200 noise: {len(devs)} runs, "
          f"CV {100 * devs.std(ddof=1):.1f} %\n")
    print("| runs | noise | " + " | ".join(f"{s:g} %" for s in SHIFTS_PCT) + " |")
    print("|---|---|" + "---|" * len(SHIFTS_PCT))
    for n in LENGTHS:
        for noise in NOISES:
            cells = []
            for s in SHIFTS_PCT:
                det, false = rates(args.trials, n, s, noise, max_pvalue=args.max_pvalue,
                                   min_magnitude=args.min_magnitude, devs=devs)
                cells.append(f"false {100 * false:.1f} %" if s == 0 else f"{100 * det:.0f} % ({100 * false:.0f} %)")
            print(f"| {n} | {noise} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
