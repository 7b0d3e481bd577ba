"""``python -m pytest_moeperf results LOG [--json OUT]``: the cases a results log holds, and the run rebuilt
from them. The log is read line by line and summed up as it goes (issue 29: it was read whole, ~5x its
size in memory); with ``--json`` each case's newest record is read again from where it lies in the log
and written out one at a time (log_document.DocumentBuilder)."""

from __future__ import annotations

import os
import sys

from pytest_moeperf.metrics.formats import sig as _fmt
from pytest_moeperf.results.documents import SERVING, benchmark_kind
from pytest_moeperf.results.log_document import DocumentBuilder, SettingsSeen, json_chunks
from pytest_moeperf.results.results_log import LogError, iter_log, record_at


def add_arguments(parser) -> None:
    parser.add_argument("log", metavar="LOG", help="results log written by --moeperf-results (JSON lines)")
    parser.add_argument("--json", metavar="OUT", help="write the finished cases as a pytest-benchmark JSON document")


def case_line(b: dict) -> str:
    """One finished case (or serving load point) of the listing."""
    x = b.get("extra_info") or {}
    if benchmark_kind(b) == SERVING:  # a serving load point (benchmarks/test_serving.py)
        return (f"ok      {b.get('name') or b['fullname']}: req_ttft_ms_p50={_fmt(x.get('req_ttft_ms_p50'))} "
                f"req_tpot_ms_p50={_fmt(x.get('req_tpot_ms_p50'))} output_tokens_per_s={_fmt(x.get('output_tokens_per_s'))} "
                f"requests={x.get('requests')} failed={x.get('failed_requests')}")
    return (f"ok      {b.get('name') or b['fullname']}: ttft_ms={_fmt(x.get('ttft_ms'))} tpot_ms={_fmt(x.get('tpot_ms'))} "
            f"decode_tokens_per_s={_fmt(x.get('decode_tokens_per_s'))} rounds={x.get('rounds')}")


def summarize(path: str, notes: list[str], records=None) -> tuple[list[str], list[str], SettingsSeen, DocumentBuilder]:
    """One pass over the log (``records``: iter_log's, for a test): the listing's lines of finished and
    failed cases, the settings seen, and the document's index. No record is kept."""
    ok, failed, seen, doc, n = [], [], SettingsSeen(), DocumentBuilder(), 0
    for rec, where in (iter_log(path, notes) if records is None else records):
        n += 1
        seen.add(rec)
        doc.add(rec, where)
        if rec["type"] == "case":
            ok.append(case_line(rec["benchmark"]))
        elif rec["type"] == "failed":
            failed.append(f"FAILED  {rec.get('case')}: {rec.get('error')}")
    if not n:
        raise LogError(f"{path} holds no records; pass the file given to --moeperf-results")
    return ok, failed, seen, doc


def run(args) -> int:
    if args.json:
        from pytest_moeperf.results.outputs import check_output_file

        check_output_file("--json", args.json)
        if os.path.realpath(args.json) == os.path.realpath(args.log):
            raise ValueError(f"--json {args.json} is the log itself; give another path")
    notes: list[str] = []
    ok, failed, seen, doc = summarize(args.log, notes)
    for line in ok + failed:
        print(line)
    print(f"{len(ok)} finished, {len(failed)} failed")
    mixed = seen.note()
    for note in notes + ([mixed] if mixed else []):
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        from pytest_moeperf.results.outputs import write_atomic

        with open(args.log, "rb") as fh:
            write_atomic(args.json, json_chunks(doc.head(), "benchmarks",
                                                doc.benchmarks(lambda where: record_at(fh, where)["benchmark"])))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
