"""Command line: ``python -m pytest_moeperf {compare,report,results,history,merge,plan,ab,save-tiny} ...``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

SUBCOMMANDS = {
    "compare": ("pytest_moeperf.gate.gate_cli", "compare a run against a baseline and print the verdicts"),
    "report": ("pytest_moeperf.report.cli", "write a markdown report with the paper's tables and PNG plots"),
    "results": ("pytest_moeperf.results.results_cli", "show the cases recorded in a results log (also after a crash)"),
    "history": ("pytest_moeperf.history.history_cli", "change points over the stored runs: trends, segments, a JSON"),
    "merge": ("pytest_moeperf.results.merge_cli", "merge several runs' JSON documents into one (later files win)"),
    "plan": ("pytest_moeperf.parallel.plan", "run a plan of benchmark steps on a GPU box in lanes, resuming after a time limit"),
    "ab": ("pytest_moeperf.ab.ab_cli", "measure base and head interleaved on one GPU and decide on paired runs"),
    "save-tiny": ("pytest_moeperf.model.save_tiny", "save a tiny random model with its tokenizer as a checkpoint folder"),
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
    stdout, sys.stdout = sys.stdout, _PipeSafe(sys.stdout)
    try:
        code = int(module.run(args) or 0)
        sys.stdout.flush()
        return code
    except (OSError, ValueError) as exc:  # bad files and inputs: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        sys.stdout = stdout


class _PipeSafe:
    """stdout that a reader may close early (``compare ... | head -1``): the rest of the output is
    dropped, and the command still finishes its work (--json files) and its exit status."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.closed_pipe = False

    def _closed(self) -> None:
        self.closed_pipe = True
        try:  # the interpreter's last flush of the real stdout then goes nowhere, quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._closed()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


if __name__ == "__main__":
    sys.exit(main())
