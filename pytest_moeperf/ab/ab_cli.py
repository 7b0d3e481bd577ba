"""``python -m pytest_moeperf ab [options] -- PYTEST ARGS``: base and head measured side by side on one GPU.

    python -m pytest_moeperf ab -o ab-out -- benchmarks/test_deployment.py --gpu h200 \\
        --moeperf-models gpt-oss-20b --moeperf-contexts 2048 --moeperf-backend static

Prints one line per decided-worse or undecided metric (<= 120 characters), a count of the rest, the
outputs check, and writes OUT/ab.json (every run, pair, ratio and interval) and OUT/ab.md.
Exit: 0 PASS or INCONCLUSIVE (1 with --strict), 1 FAIL, 2 bad input or a run that failed,
3 nothing compared. The rule: docs/gate.md, "A/B on one GPU".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from datetime import datetime
from pathlib import Path

from pytest_moeperf.ab import paired
from pytest_moeperf.ab.runner import ORDERS, AbError, AbRunner
from pytest_moeperf.ab.same_output import output_line
from pytest_moeperf.ab.sides import WORKTREE, default_base, make_side, remove_worktrees, repo_top
from pytest_moeperf.gate.verdicts import EXIT_NO_OVERLAP, FAIL, INCONCLUSIVE, PASS


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sides")
    g.add_argument("--a", metavar="REF", default=None,
                   help=f"base: a git ref or {WORKTREE} (default: the merge base of HEAD with main)")
    g.add_argument("--b", metavar="REF", default=WORKTREE, help=f"head: a git ref or {WORKTREE} (the default)")
    for s in ("a", "b"):
        g.add_argument(f"--{s}-python", metavar="PY", default=sys.executable,
                       help=f"side {s.upper()}'s Python (another virtual environment: another transformers)")
        g.add_argument(f"--{s}-args", metavar="ARGS", default="", help=f"extra pytest arguments of side {s.upper()}")
        g.add_argument(f"--{s}-env", metavar="NAME=VALUE", action="append", default=[],
                       help=f"environment of side {s.upper()}'s runs (repeatable)")
    r = p.add_argument_group("rule")
    r.add_argument("--min-pairs", type=int, default=3, help="pairs before the first decision (default 3)")
    r.add_argument("--max-pairs", type=int, default=8, help="pairs at most; fixes the looks (default 8)")
    r.add_argument("--budget-min", type=float, default=None,
                   help="stop before a pair that would end past this many minutes of the job (GPU minutes)")
    r.add_argument("--warmup-runs", type=int, default=1, help="discarded runs per side first (default 1)")
    r.add_argument("--order", choices=ORDERS, default="abba", help="abba (default) or random (seeded)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--metrics", default=None, help="comma-separated registry keys (default: schema.AB_DEFAULT_METRICS)")
    r.add_argument("--threshold", action="append", default=[], metavar="KEY=PCT",
                   help="a metric's A/B threshold in percent (default: its kind's, schema.AB_THRESHOLD_BY_KIND_PCT)")
    r.add_argument("--alpha", type=float, default=paired.DEFAULT_ALPHA,
                   help="chance that any look's interval misses (default 0.05)")
    r.add_argument("--strict", action="store_true", help="exit 1 on INCONCLUSIVE too")
    p.add_argument("-o", "--out", default=None, help="output folder, new or empty (default .moeperf/ab/<time>)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every metric's line")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then the pytest arguments of every run")


def _thresholds(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            pct = float(value)
        except ValueError:
            pct = float("nan")
        if not sep or not math.isfinite(pct) or pct <= 0:
            raise ValueError(f"--threshold: {item!r} is not KEY=PCT with PCT > 0; e.g. --threshold tpot_ms=2")
        out[key] = pct
    return out


def _check(args) -> tuple[list[str], list[str] | None, dict[str, float], Path]:
    if args.min_pairs < 2:
        raise ValueError("--min-pairs must be >= 2 (an interval needs two pairs)")
    if args.max_pairs < args.min_pairs:
        raise ValueError(f"--max-pairs ({args.max_pairs}) must be >= --min-pairs ({args.min_pairs})")
    if args.warmup_runs < 0:
        raise ValueError("--warmup-runs must be >= 0")
    if not 0 < args.alpha < 1:
        raise ValueError("--alpha must be between 0 and 1, e.g. 0.05")
    if args.budget_min is not None and not (math.isfinite(args.budget_min) and args.budget_min > 0):
        raise ValueError("--budget-min must be a number of minutes > 0")
    metrics = [m for m in (args.metrics or "").split(",") if m] or None
    unknown = paired.unknown_metrics(metrics or [])
    if unknown:
        raise ValueError(f"--metrics: unknown metric {unknown[0]!r}; see docs/metrics.md's registry for the keys")
    thresholds = _thresholds(args.threshold)
    pytest_args = list(args.pytest_args)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    if not pytest_args:
        raise ValueError("give the runs' pytest arguments after --, e.g. ab -- benchmarks/test_deployment.py --gpu h200")
    out = Path(args.out or Path(".moeperf") / "ab" / datetime.now().strftime("%Y%m%d-%H%M%S"))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"-o {out}: exists and is not an empty folder; choose a new one (no run overwrites another)")
    return pytest_args, metrics, thresholds, out


def run(args) -> int:
    pytest_args, metrics, thresholds, out = _check(args)
    top = repo_top(Path.cwd()) if (args.a != WORKTREE or args.b != WORKTREE) else Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    sides = []
    try:
        a_ref = default_base(top) if args.a is None else args.a
        sides.append(make_side("A", a_ref, top, out, args.a_python, args.a_args, args.a_env))
        sides.append(make_side("B", args.b, top, out, args.b_python, args.b_args, args.b_env))
        runner = AbRunner(sides[0], sides[1], pytest_args, out, order=args.order, seed=args.seed,
                          warmup_runs=args.warmup_runs, min_pairs=args.min_pairs, max_pairs=args.max_pairs,
                          budget_s=args.budget_min * 60 if args.budget_min else None,
                          metrics=metrics,
                          thresholds_pct=thresholds, alpha=args.alpha,
                          progress=lambda line: print(line, file=sys.stderr, flush=True))
        try:
            result = runner.run()
        except AbError as exc:
            result = runner.summary(runner.decide() if len(runner.docs["B"]) >= 2 else [], f"error: {exc}", 0.0)
            write_result(out, result)
            raise
    except AbError as exc:
        raise ValueError(str(exc)) from None
    finally:
        remove_worktrees(top, sides)
    write_result(out, result)
    print_result(result, args.verbose)
    return exit_code(result["verdict"], args.strict)


def exit_code(verdict: str, strict: bool) -> int:
    if verdict == FAIL:
        return 1
    if verdict == PASS:
        return 0
    if verdict == INCONCLUSIVE:
        return 1 if strict else 0
    return EXIT_NO_OVERLAP


def write_result(out: Path, result: dict) -> None:
    for name, text in (("ab.json", json.dumps(_finite(result), indent=1, allow_nan=False)),
                       ("ab.md", markdown(result))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, out / name)


from pytest_moeperf.results.outputs import finite_json as _finite  # noqa: E402  one home for NaN -> null


def print_result(result: dict, verbose: bool) -> None:
    rows = [paired.PairedMetric(**{**m, "ratios": tuple(m["ratios"])}) for m in result["metrics"]]
    shown = [r for r in rows if verbose or r.verdict != PASS]
    for r in shown:
        print(r.line())
    rest = len(rows) - len(shown)
    if rest:
        same = sum(r.outcome == paired.SAME for r in rows if r not in shown)
        print(f"{rest} more PASS ({same} same, {rest - same} better); -v lists them")
    for row in result["outputs"]:
        print(output_line(row))
    minutes = result["elapsed_s"] / 60
    print(f"ab: {result['verdict']} after {result['pairs']} pairs, {minutes:.1f} min ({result['stopped']})")


def _settle_cell(m: dict) -> str:
    return paired.settle_text(m["pairs_to_settle"]) if m["outcome"] == paired.UNDECIDED else "—"


def markdown(result: dict) -> str:
    lines = [f"# A/B: {result['verdict']}", "",
             f"{result['pairs']} pairs, {result['elapsed_s'] / 60:.1f} min, stopped: {result['stopped']}; "
             f"A = {result['sides']['A']['ref']}, B = {result['sides']['B']['ref']}; rule: alpha "
             f"{result['rule']['alpha']} over {result['rule']['looks']} looks (docs/gate.md).", "",
             "| benchmark | metric | verdict | outcome | change | interval | threshold | pairs | to settle |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in result["metrics"]:
        ch = "—" if m["change_pct"] is None else f"{m['change_pct']:+.2f} %"
        ci = "—" if m["ci_low_pct"] is None else f"[{m['ci_low_pct']:+.2f}, {m['ci_high_pct']:+.2f}] %"
        lines.append(f"| `{m['bench']}` | {m['metric']} | {m['verdict']} | {m['outcome']} | {ch} | {ci} | "
                     f"{m['threshold_pct']:g} % | {m['pairs']} | {_settle_cell(m)} |")
    if result["outputs"]:
        lines += ["", "| benchmark | same tokens | first difference | first-step logits max abs diff |",
                  "|---|---|---|---|"]
        for o in result["outputs"]:
            d = o["logits_max_abs_diff"]
            lines.append(f"| `{o['bench']}` | {'yes' if o['same_tokens'] else 'NO'} | "
                         f"{'—' if o['first_difference'] is None else o['first_difference']} | "
                         f"{'—' if d is None else f'{d:.3g}'} |")
    return "\n".join(lines)


def parse_and_check(argv: list[str]) -> tuple[list[str], list[str] | None, dict[str, float], Path]:
    """The checks ``run`` makes before anything runs, from a command line (no side effects)."""
    parser = argparse.ArgumentParser(prog="python -m pytest_moeperf ab")
    add_arguments(parser)
    return _check(parser.parse_args(argv))
