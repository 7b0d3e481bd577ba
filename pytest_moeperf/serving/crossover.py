"""MoE vs dense under load: the ratios with intervals, the load where each crosses 1, and what moves it.

For every MoE x dense pair of closed-loop series (model + engine setting) and each metric (output
tokens/s, TPOT p50, J/output token), at every number of users both ran: the MoE/dense ratio with a 95 %
interval, percentile bootstrap (:data:`N_BOOT` resamples, seed 0):

- a point run twice or more: resampling its repeats (the between-run spread);
- a point run once: resampling its requests (within-run only: requests of one point share the batch
  and the machine, so the interval is narrower than the spread between runs or machines). A resample's
  tokens/s is the measured tokens/s x mean E2E / the resample's mean E2E (Little's law at fixed users);
  its TPOT p50 the measured one x the resample's median / the median. J/token is one energy window per
  run: no interval from one run.

The crossing: the first pair of adjacent loads between which the ratio crosses 1, interpolated linearly
in log load and log ratio; its interval is the same interpolation over the bootstrap resamples (with
the share of resamples that cross inside the measured range). Beside it the per-step model's crossing:
the batch at which the bytes a step must read (step_table.py, experts by the independence formula)
are equal for the two models, searched over 1 to :data:`MODEL_MAX_BATCH`. And what moved the ratio:
each model's measured cost per output token (ms for tokens/s, ms per step for TPOT, J for J/token)
split into the floors of the byte terms and the overhead above them; the change of MoE minus dense per
term, from the lowest common load to the first load past the crossing (or the highest load), as a
share of the whole change.
"""

from __future__ import annotations

import math
from statistics import median

import numpy as np

from pytest_moeperf.metrics.step_model import decompose, floor_ms

from . import step_table
from .step_table import TERM_NAMES, Board

N_BOOT = 2000
MODEL_MAX_BATCH = 1024
METRICS = (  # key, label, samples key, statistic over samples, cost per output token kind, higher is better
    ("output_tokens_per_s", "output tokens/s", "req_e2e_ms", "mean-inverse", "ms/token", True),
    ("req_tpot_ms_p50", "TPOT p50", "req_tpot_ms", "median", "ms/step", False),
    ("j_per_output_token", "J/token", None, None, "J/token", False),
)


def replicates(points: list[dict], key: str, sample_key: str | None, stat: str | None,
               rng: np.random.Generator) -> tuple[float | None, np.ndarray | None, str]:
    """(estimate, N_BOOT bootstrap replicates or None, how) for one series' load point and metric."""
    values = [float(p[key]) for p in points if p.get(key) is not None]
    if not values:
        return None, None, "not measured"
    if len(values) >= 2:
        idx = rng.integers(0, len(values), (N_BOOT, len(values)))
        return float(np.mean(values)), np.asarray(values)[idx].mean(axis=1), f"{len(values)} repeats"
    samples = ((points[0].get("samples") or {}).get(sample_key) or []) if sample_key else []
    if len(samples) < 2:
        return values[0], None, "one run"
    s = np.asarray(samples, dtype=float)
    rs = s[rng.integers(0, len(s), (N_BOOT, len(s)))]
    if stat == "mean-inverse":
        reps = values[0] * s.mean() / rs.mean(axis=1)
    else:
        reps = values[0] * np.median(rs, axis=1) / float(np.median(s))
    return values[0], reps, "one run, within-run"


def crossing(loads: list[float], ratios: list[float]) -> float | None:
    """Where the ratio first crosses 1 between adjacent loads, linear in log load and log ratio."""
    lr = [math.log(r) for r in ratios]
    for i in range(len(loads) - 1):
        a, b = lr[i], lr[i + 1]
        if a == 0:
            return loads[i]
        if a * b < 0 or b == 0:
            t = a / (a - b)
            return math.exp(math.log(loads[i]) + t * (math.log(loads[i + 1]) - math.log(loads[i])))
    return None


def model_crossing(moe: dict, dense: dict, max_batch: int = MODEL_MAX_BATCH) -> str:
    """The batch where the two models' step bytes are equal (formula experts), or the ratio's range."""
    grid = sorted({round(2 ** (i / 8), 6) for i in range(0, 8 * int(math.log2(max_batch)) + 1)})
    ratios = []
    for b in grid:
        m, d = step_table.point_bytes(moe, b, measured=False), step_table.point_bytes(dense, b, measured=False)
        if m is None or d is None:
            return "no per-step model (no preset config)"
        ratios.append(d.total / m.total)
    at = crossing(grid, ratios)
    if at is not None:
        return f"bytes equal at batch {at:.3g}"
    low = min(range(len(grid)), key=ratios.__getitem__)
    return (f"never within batch 1–{max_batch}: dense/MoE bytes per step {ratios[0]:.2f} at 1, lowest "
            f"{ratios[low]:.2f} at {grid[low]:.3g}, {ratios[-1]:.2f} at {max_batch}")


def costs(x: dict, kind: str, boards: dict[str, Board]) -> dict[str, float] | None:
    """The measured cost per output token (or per step) split into byte-term floors and overhead."""
    per_token = step_table.per_token_terms(x, boards, energy=kind == "J/token")
    if per_token is None:
        return None
    b = step_table.batch_of(x)
    if kind == "ms/token" and x.get("output_tokens_per_s"):
        return decompose(1000.0 / x["output_tokens_per_s"], per_token)
    if kind == "ms/step" and x.get("req_tpot_ms_p50"):
        return decompose(x["req_tpot_ms_p50"], {t: v * b for t, v in per_token.items()})
    if kind == "J/token" and x.get("j_per_output_token"):
        return decompose(x["j_per_output_token"], per_token)
    return None


def what_moved(moe: tuple[dict, dict], dense: tuple[dict, dict], kind: str, boards: dict[str, Board]) -> str:
    """Shares of the change in (MoE cost - dense cost) per term between two loads (from, to)."""
    parts = [costs(x, kind, boards) for x in (*moe, *dense)]
    if any(p is None for p in parts):
        return "—"
    m0, m1, d0, d1 = parts
    delta = {t: (m1[t] - d1[t]) - (m0[t] - d0[t]) for t in m0}
    top = max(abs(v) for v in delta.values())
    terms = ", ".join(f"{TERM_NAMES[t]} {delta[t]:+.3g}" for t in sorted(delta, key=lambda t: -abs(delta[t]))
                      if top and abs(delta[t]) >= 0.005 * top)
    return (f"{moe[0]['load_value']:g}→{moe[1]['load_value']:g} users, MoE−dense {kind} "
            f"{sum(delta.values()):+.3g}: {terms}")


def _interval(reps: np.ndarray | None, fmt: str = ".2f") -> str:
    if reps is None:
        return ""
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return f" [{lo:{fmt}}–{hi:{fmt}}]"


def mean_point(points: list[dict]) -> dict:
    """A load point's repeats as one: the first's keys with the measured figures averaged."""
    x = dict(points[0])
    for key, *_ in METRICS:
        values = [p[key] for p in points if p.get(key) is not None]
        x[key] = sum(values) / len(values) if values else None
    return x


def _by_load(pts: list[dict]) -> dict[float, list[dict]]:
    out: dict[float, list[dict]] = {}
    for x in pts:
        out.setdefault(float(x["load_value"]), []).append(x)
    return out


def pair_rows(groups: dict, boards: dict[str, Board], seed: int = 0) -> list[list[str]]:
    """One row per MoE x dense pair of closed-loop series and metric (``groups``: report/serving_view.group)."""
    closed = {s: _by_load(p) for (s, c), p in groups.items() if c and p}
    arch = {s: next(iter(p.values()))[0].get("architecture") for s, p in closed.items()}
    rows = []
    for ms in (s for s in closed if arch[s] == "moe"):
        for ds in (s for s in closed if arch[s] == "dense"):
            loads = sorted(set(closed[ms]) & set(closed[ds]))
            for key, label, skey, stat, kind, higher in METRICS:
                rng = np.random.default_rng(seed)
                rows.append([ms, ds, label] + _pair_metric(closed[ms], closed[ds], loads, (key, skey, stat, kind, higher),
                                                           boards, rng))
    return rows


def _pair_metric(moe: dict, dense: dict, loads: list[float], metric: tuple, boards, rng) -> list[str]:
    key, skey, stat, kind, higher = metric
    ratios, reps, hows, used = [], [], set(), []
    for load in loads:
        (me, mr, mh), (de, dr, dh) = (replicates(p[load], key, skey, stat, rng) for p in (moe, dense))
        if not me or not de:
            continue
        used.append(load)
        ratios.append(me / de)
        reps.append(mr / dr if mr is not None and dr is not None else None)
        hows |= {mh, dh}
    if not used:
        return ["not measured at a common load", "—", "—", "—"]
    cells = ", ".join(f"{load:g}: {r:.2f}{_interval(rr)}" for load, r, rr in zip(used, ratios, reps))
    at = crossing(used, ratios)
    span = f"{used[0]:g}–{used[-1]:g} users"
    if at is None:
        measured = f"not within the measured range ({span})"
    else:
        after = next((r for r in ratios if math.log(r) * math.log(ratios[0]) <= 0 and r != ratios[0]), ratios[-1])
        side = f"MoE {'ahead' if (after > 1) == higher else 'behind'} above it"
        measured = f"{at:.3g} users"
        if all(r is not None for r in reps):
            xs = [crossing(used, list(col)) for col in np.column_stack(reps)]
            hits = [v for v in xs if v is not None]
            if hits:
                lo, hi = np.percentile(hits, [2.5, 97.5])
                measured += f" [{lo:.3g}–{hi:.3g}], {side} ({100 * len(hits) / len(xs):.0f} % of resamples cross)"
        else:
            measured += f", {side} (no interval: " + ", ".join(sorted(hows)) + ")"
    hows_text = "; ".join(sorted(hows))
    stop = next((i + 1 for i in range(len(used) - 1) if (ratios[i] - 1) * (ratios[i + 1] - 1) <= 0), len(used) - 1)
    m0, m1, d0, d1 = (mean_point(side[used[i]]) for side, i in ((moe, 0), (moe, stop), (dense, 0), (dense, stop)))
    moved = what_moved((m0, m1), (d0, d1), kind, boards) if stop > 0 else "—"
    return [f"{cells} ({hows_text})", measured, model_crossing(m0, d0), moved]

