"""Command line: ``python -m pytest_moeperf {compare,report,results,history,merge} ...``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "compare": ("pytest_moeperf.gate.gate_cli", "compare a run against a baseline and print the verdicts"),
    "report": ("pytest_moeperf.report.cli", "write a markdown report with the paper's tables and PNG plots"),
    "results": ("pytest_moeperf.results.results_log", "show the cases recorded in a results log (also after a crash)"),
    "history": ("pytest_moeperf.history.history_cli", "change points over the stored runs: trends, segments, a JSON"),
    "merge": ("pytest_moeperf.results.merge_cli", "merge several runs' JSON documents into one (later files win)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_moeperf")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except (OSError, ValueError) as exc:  # bad files and inputs: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
