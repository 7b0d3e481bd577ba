"""``python -m pytest_moeperf history STORAGE``: change points over the stored runs of main.

Exit status: 0 (change points are findings, not failures), 2 bad input (raised as
ValueError/OSError and printed on one line by __main__).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pytest_moeperf.history import history as h
from pytest_moeperf.history.history_render import render_markdown, render_text, write_plots
from pytest_moeperf.results.outputs import append_text, write_atomic


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a p-value between 0 and 1, e.g. 0.001")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v < 10.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a relative change >= 0, e.g. 0.05 for 5 %")
    return v


def _min_runs(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of runs >= 3")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("storage", metavar="STORAGE",
                        help="pytest-benchmark storage folder (looked into recursively), e.g. baselines/h200-static")
    parser.add_argument("--metric", action="append", default=[], metavar="KEY",
                        help="metric(s) of schema.py (repeatable or comma-separated; 'all'); default: the "
                             "sampled ones (" + ", ".join(h.DEFAULT_METRICS) + ")")
    parser.add_argument("--since", metavar="DATE", help="only runs from this ISO date/time on (by the order's time)")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="write history.md and a trend plot per metric (PNG) into this folder")
    parser.add_argument("--json", metavar="FILE", help="write the history as JSON here")
    parser.add_argument("--markdown", metavar="FILE",
                        help="append the latest change points as markdown here (e.g. \"$GITHUB_STEP_SUMMARY\")")
    parser.add_argument("--latest", type=int, default=10, metavar="N",
                        help="change points in --markdown (newest first; default 10)")
    parser.add_argument("--max-pvalue", type=_probability, default=h.DEFAULT_MAX_PVALUE, metavar="P",
                        help=f"significance a change point needs (Otava's t-test; default {h.DEFAULT_MAX_PVALUE})")
    parser.add_argument("--min-magnitude", type=_fraction, default=h.DEFAULT_MIN_MAGNITUDE, metavar="FRACTION",
                        help="keep weaker change points whose relative change exceeds this (Otava; default 0)")
    parser.add_argument("--min-runs", type=_min_runs, default=h.DEFAULT_MIN_RUNS, metavar="N",
                        help=f"shorter series are '{h.INSUFFICIENT}' (default {h.DEFAULT_MIN_RUNS})")


def run(args: argparse.Namespace) -> int:
    metrics = h.resolve_metrics(args.metric)
    since = h.parse_since(args.since) if args.since else None
    h.require_otava()  # the one-line install hint before any work, not after the loading
    runs, notes = h.load_runs(args.storage, since)
    history = h.build_history(runs, metrics, notes, args.max_pvalue, args.min_magnitude, args.min_runs)
    print(render_text(history))
    if args.output:
        out = Path(args.output)
        try:
            plots = write_plots(history, out)
        except ImportError:
            raise h.HistoryError("the trend plots need matplotlib: pip install 'pytest-moeperf[history]' "
                                 "(or leave out -o)") from None
        write_atomic(out / "history.md", render_markdown(history, plots=[str(p) for p in plots]))
        print(f"wrote {out / 'history.md'} and {len(plots)} plots" + ("" if plots else
              f" (no series has {args.min_runs} runs or more to draw)"))
    if args.json:
        write_atomic(args.json, json.dumps(history.to_json(), indent=2) + "\n")
    if args.markdown:  # the step summary is appended to
        append_text(args.markdown, render_markdown(history, latest=args.latest))
    return 0
