"""``python -m pytest_moeperf merge A.json B.json ... -o OUT.json``: several runs as one document.

Benchmarks are concatenated in file order; where two files hold the same benchmark
(``fullname``) the later file wins, and likewise for ``moeperf_failed`` entries (a later
result clears an earlier failure and the other way round). Each benchmark keeps the GPU it
ran on (``extra_info.gpu_uuid``, filled from its file's ``machine_info`` when missing).
``machine_info`` is the first file's; ``moeperf_sources`` lists the files in order.
The merge is ``log_document.to_benchmark_document``: each file is fed to it as a session
record followed by its cases and failures, so a merge behaves like one results log.
"""

from __future__ import annotations

import argparse
import sys

from pytest_moeperf.results.documents import read_document
from pytest_moeperf.results.log_document import to_benchmark_document
from pytest_moeperf.results.results_log import json_text


def combine(paths: list[str]) -> dict:
    records, docs = [], []
    for path in paths:
        doc = read_document(path)
        docs.append(doc)
        records.append({"type": "session", "machine_info": doc.get("machine_info") or {}})
        records += [{"type": "case", "benchmark": b} for b in doc["benchmarks"]]
        records += [{"type": "failed", **f} for f in doc.get("moeperf_failed") or []]
    merged = to_benchmark_document(records)
    merged["machine_info"] = docs[0].get("machine_info") or {}
    merged["commit_info"] = docs[0].get("commit_info") or {}
    merged["moeperf_sources"] = list(paths)
    return merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="RUN.json", help="pytest-benchmark JSON files; later ones win")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.json", help="the merged document")


def run(args: argparse.Namespace) -> int:
    merged = combine(args.inputs)
    from pytest_moeperf.results.outputs import write_atomic

    write_atomic(args.output, json_text(merged) + "\n")
    print(f"wrote {args.output}: {len(merged['benchmarks'])} benchmarks, "
          f"{len(merged['moeperf_failed'])} failed, from {len(args.inputs)} files", file=sys.stderr)
    return 0
