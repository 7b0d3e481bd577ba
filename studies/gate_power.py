#!/usr/bin/env python3
"""How often the gate FAILs a slowdown of a given size, with m runs a side, at the drift measured on a GPU.

Not part of the product: the numbers behind docs/gate.md's "runs a side" advice (issue 21, items 2-3).
Two ways to make a run, both from the committed runs of one lease (a folder of groups, each a subfolder
of runs of one setting, e.g. baselines/h200-runs/2026-12-02b/{base,slow05,slow15,pin,warm}):

* ``resample``: a real run's per-round ``tpot_ms``, divided by its group's mean run median and scaled to
  the simulated level: every simulated run carries a measured run's offset, its bimodal rounds and
  their order (the gate's autocorrelation factor sees them);
* ``normal``: run levels ~ N(1, d) with d the pooled CV of the runs' medians (each group about its own
  mean, as the gate pools it), rounds ~ N(level, c) with c the mean within-run CV.

Every trial builds pytest-benchmark documents and asks the gate itself
(``pytest_moeperf.gate.gate_run.compare_documents``) for the ``tpot_ms`` verdict.

    python studies/gate_power.py baselines/h200-runs/2026-12-02b --runs 1,2,4,8,12,16 --effects 0,5,10,15 \
        --thresholds 7,4 --trials 200 --json power.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_moeperf.gate import gate_run  # noqa: E402
from pytest_moeperf.gate.config import GateConfig  # noqa: E402
from pytest_moeperf.metrics import schema  # noqa: E402

CENTER_MS = 10.0


def load_groups(root: Path) -> dict[str, list[np.ndarray]]:
    groups = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = []
        for f in sorted(sub.glob("run*.json")):
            for b in json.loads(f.read_text())["benchmarks"]:
                runs.append(np.asarray(b["extra_info"]["samples"]["tpot_ms"], float))
        if len(runs) >= 2:
            groups[sub.name] = runs
    if not groups:
        raise SystemExit(f"error: no subfolder of {root} holds two or more run*.json")
    return groups


def measured_spread(groups: dict[str, list[np.ndarray]]) -> tuple[float, float, list[np.ndarray]]:
    """(pooled CV of run medians, mean within-run CV, every run's rounds relative to its group)."""
    ss, dof, relative, within = 0.0, 0, [], []
    for runs in groups.values():
        med = np.array([np.median(r) for r in runs])
        ss += float(((med / med.mean() - 1.0) ** 2).sum())
        dof += len(runs) - 1
        relative += [r / med.mean() for r in runs]
        within += [r.std(ddof=1) / r.mean() for r in runs]
    return (ss / dof) ** 0.5, float(np.mean(within)), relative


def run_doc(tpot: np.ndarray) -> dict:
    extra = {k: None for k in schema.REQUIRED_KEYS}
    tpot = [float(x) for x in tpot]
    extra.update(tpot_ms=float(np.median(tpot)), backend="static",
                 samples={"tpot_ms": tpot})
    return {"machine_info": {"gpu": {"name": "NVIDIA H200"}}, "commit_info": {}, "datetime": "2026-12-02T00:00:00",
            "version": "5.2.3", "benchmarks": [{"name": "test_generate[sim]", "fullname": "benchmarks/x::test_generate[sim]",
                                                "params": {}, "stats": {"median": 1.0}, "extra_info": extra}]}


def make_runs(rng, how: str, m: int, level: float, drift: float, within: float, relative) -> list[dict]:
    if how == "resample":
        picks = rng.integers(0, len(relative), m)
        return [run_doc(relative[i] * level) for i in picks]
    rounds = len(relative[0])
    return [run_doc(rng.normal(lv, within * lv, rounds)) for lv in rng.normal(level, drift * level, m)]


def verdict_rates(rng, how, m, effect_pct, threshold_pct, trials, drift, within, relative) -> dict[str, float]:
    thresholds = dict(GateConfig().thresholds_pct)
    thresholds["tpot_ms"] = threshold_pct
    config = GateConfig(thresholds_pct=thresholds)
    counts: dict[str, int] = {}
    for _ in range(trials):
        base = make_runs(rng, how, m, CENTER_MS, drift, within, relative)
        head = make_runs(rng, how, m, CENTER_MS * (1 + effect_pct / 100), drift, within, relative)
        result = gate_run.compare_documents(base, head if m > 1 else head[0], config)
        v = next(x.verdict for x in result.benchmarks[0].metrics if x.metric == "tpot_ms")
        counts[v] = counts.get(v, 0) + 1
    return {k: round(v / trials, 3) for k, v in sorted(counts.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_folder")
    ap.add_argument("--runs", default="1,2,4,8,12,16", help="runs a side, comma-separated")
    ap.add_argument("--effects", default="0,5,10,15", help="slowdowns in percent, comma-separated")
    ap.add_argument("--thresholds", default="7", help="tpot_ms thresholds in percent, comma-separated")
    ap.add_argument("--how", default="resample,normal")
    ap.add_argument("--drift", type=float, default=None, help="normal only: this run-to-run CV (%%) instead of the measured")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    drift, within, relative = measured_spread(load_groups(Path(a.runs_folder)))
    if a.drift is not None:
        drift = a.drift / 100
    print(f"measured: run-to-run CV of medians {drift * 100:.2f} % (pooled within groups), "
          f"within-run CV {within * 100:.2f} %, {len(relative)} runs, {len(relative[0])} rounds each")
    rng = np.random.default_rng(a.seed)
    rows = []
    for how in a.how.split(","):
        for thr in (float(x) for x in a.thresholds.split(",")):
            for eff in (float(x) for x in a.effects.split(",")):
                for m in (int(x) for x in a.runs.split(",")):
                    rates = verdict_rates(rng, how, m, eff, thr, a.trials, drift, within, relative)
                    rows.append({"how": how, "threshold_pct": thr, "effect_pct": eff, "runs_a_side": m, **rates})
                    print(f"{how:8s} thr {thr:4.1f}%  slowdown {eff:4.1f}%  {m:2d} runs a side: "
                          + "  ".join(f"{k} {v:.0%}" for k, v in rates.items()), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"drift_pct": drift * 100, "within_cv_pct": within * 100,
                                            "trials": a.trials, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
