"""``python -m pytest_moeperf compare BASE HEAD``: the gate outside pytest.

Exit status: 0 pass (WARN included), 1 a FAIL (or INCONCLUSIVE with --strict),
2 bad input (raised as ValueError/OSError and printed on one line by __main__),
3 NO-OVERLAP: nothing was compared (no benchmark in common with a metric on both sides).
"""

from __future__ import annotations

import argparse
import json

from pytest_moeperf.gate import history_gate
from pytest_moeperf.gate.config import find_pyproject, load_gate_config
from pytest_moeperf.results.documents import load_documents
from pytest_moeperf.gate.gate_render import render_markdown, render_text
from pytest_moeperf.gate.gate_run import GateRun
from pytest_moeperf.results.outputs import append_text, write_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE",
                        help="baseline: a pytest-benchmark JSON file or storage folder (newest run), e.g. baselines/h200")
    parser.add_argument("head", metavar="HEAD", nargs="+",
                        help="this run: a JSON file from --benchmark-json (or a folder: its newest run); several "
                             "runs of the same code are pooled and their spread measures the run-to-run drift")
    parser.add_argument("--threshold", action="append", default=[], metavar="METRIC=PCT",
                        help="practical threshold in percent for a metric or kind (repeatable), e.g. tpot_ms=7.5")
    parser.add_argument("--allow", action="append", default=[], metavar="SPEC",
                        help="turn FAIL into WARN for METRIC or METRIC@BENCHMARK-GLOB (repeatable)")
    parser.add_argument("--strict", action="store_true", help="INCONCLUSIVE exits 1 too")
    parser.add_argument("--json", metavar="OUT", help="write the verdict JSON here")
    parser.add_argument("--markdown", metavar="OUT",
                        help="append the markdown verdict table here (e.g. \"$GITHUB_STEP_SUMMARY\")")
    parser.add_argument("--pyproject", metavar="PATH",
                        help="read [tool.moeperf.gate] from this file (default: the nearest pyproject.toml)")
    parser.add_argument("--ignore-gpu", action="store_true", help="compare even if the GPUs differ")
    parser.add_argument("--all-runs", action="store_true",
                        help="with a BASE folder, use every stored run (a benchmark's newest wins), not the newest only")
    parser.add_argument("--baseline-segment", choices=("all", "last-stable"), default=None,
                        help="last-stable: with a BASE folder, pool per benchmark the stored runs since its newest "
                             "change point (python -m pytest_moeperf history; needs apache-otava)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every metric, PASS included")


def run(args: argparse.Namespace) -> int:
    pyproject = args.pyproject if args.pyproject else find_pyproject(".")
    config = load_gate_config(pyproject, args.threshold, args.allow, args.strict, args.ignore_gpu)
    segment = getattr(args, "baseline_segment", None) == "last-stable"
    base_docs = load_documents(args.base, all_runs=args.all_runs or segment)
    choice = history_gate.last_stable(base_docs) if segment else None
    head_docs = [load_documents(path)[-1] for path in args.head]
    result = GateRun(choice.docs if choice else base_docs, config, choice).compare(head_docs)
    lines = [f"baseline segment: {note}" for note in choice.notes] if choice else []
    print("\n".join([*lines, render_text(result, verbose=args.verbose)]))
    if args.json:
        doc = result.to_json()
        if choice:
            doc["baseline_segment"] = choice.to_json()
        write_atomic(args.json, json.dumps(doc, indent=2) + "\n")
    if args.markdown:  # the step summary is appended to
        append_text(args.markdown, "".join(f"- baseline segment: {note}\n" for note in lines and choice.notes)
                    + ("\n" if lines else "") + render_markdown(result))
    return result.exit_code(config.strict)
