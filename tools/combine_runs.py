#!/usr/bin/env python3
"""Merge several pytest-benchmark JSON documents of this suite into one.

    python tools/combine_runs.py A.json B.json ... -o combined.json

Benchmarks are concatenated in file order; where two files hold the same benchmark
(``fullname``) the later file wins, and likewise for ``moeperf_failed`` entries (a later
result clears an earlier failure and the other way round). Each benchmark keeps the GPU it
ran on (``extra_info.gpu_uuid``, filled from its file's ``machine_info`` when missing).
``machine_info`` is the first file's; ``moeperf_sources`` lists the files in order.
The merge is ``results_log.to_benchmark_document``: each file is fed to it as a session
record followed by its cases and failures, so a merge behaves like one results log.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pytest_moeperf.results_log import to_benchmark_document


def combine(paths: list[str]) -> dict:
    records, docs = [], []
    for path in paths:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
            raise ValueError(f"{path}: no 'benchmarks' list (not a pytest-benchmark JSON document)")
        docs.append(doc)
        records.append({"type": "session", "machine_info": doc.get("machine_info") or {}})
        records += [{"type": "case", "benchmark": b} for b in doc["benchmarks"]]
        records += [{"type": "failed", **f} for f in doc.get("moeperf_failed") or []]
    merged = to_benchmark_document(records)
    merged["machine_info"] = docs[0].get("machine_info") or {}
    merged["commit_info"] = docs[0].get("commit_info") or {}
    merged["moeperf_sources"] = list(paths)
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", metavar="RUN.json", help="pytest-benchmark JSON files; later ones win")
    ap.add_argument("-o", "--output", required=True, metavar="OUT.json")
    args = ap.parse_args(argv)
    try:
        merged = combine(args.inputs)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(args.output).write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}: {len(merged['benchmarks'])} benchmarks, "
          f"{len(merged['moeperf_failed'])} failed, from {len(args.inputs)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
