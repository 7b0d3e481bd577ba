"""An append-only JSON-lines log of finished cases, so no completed measurement is lost.

Each case is appended (and flushed to disk) the moment it finishes, passed or failed; a
Ctrl-C, a crash or a job time-out leaves every finished case on disk. ``python -m
pytest_moeperf results LOG`` lists them and rebuilds a pytest-benchmark JSON document
from them, which the gate and the report read like any other run.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone


class ResultsLog:
    def __init__(self, path: str):
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)

    def _append(self, record: dict) -> None:
        line = json.dumps(record, default=_json_default)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def session_started(self, machine_info: dict) -> None:
        self._append({"type": "session", "datetime": _now(), "machine_info": machine_info})

    def case_finished(self, benchmark: dict) -> None:
        self._append({"type": "case", "datetime": _now(), "benchmark": benchmark})

    def case_failed(self, fullname: str, case_id: str, error: str, extra: dict | None = None) -> None:
        self._append({"type": "failed", "datetime": _now(), "fullname": fullname, "case": case_id,
                      "error": error, **(extra or {})})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def read_log(path: str) -> list[dict]:
    """Records of a log; a torn last line (crash mid-write) is skipped, not fatal."""
    if not os.path.exists(path):
        raise ValueError(f"results log {path} does not exist; pass the file given to --moeperf-results")
    with open(path, encoding="utf-8") as fh:
        return parse_log_lines(fh.read().splitlines(), path)


def parse_log_lines(lines: list[str], where: str) -> list[dict]:
    """Records of a log's lines; a torn last line (interrupted while writing) is skipped."""
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"results log {where}: line {i + 1} is not JSON; the file is damaged") from None
    return records


def finished_case_ids(path: str) -> set[str]:
    """Case ids with a finished ("case") record in the log: what --moeperf-resume skips."""
    ids = set()
    for rec in read_log(path):
        if rec.get("type") == "case":
            bench = rec.get("benchmark") or {}
            if bench.get("param"):
                ids.add(str(bench["param"]))
    return ids


def to_benchmark_document(records: list[dict]) -> dict:
    """A pytest-benchmark-shaped document from a log; the newest record of each case wins."""
    machine_info = {}
    by_name: dict[str, dict] = {}
    for rec in records:
        if rec.get("type") == "session":
            machine_info = rec.get("machine_info") or machine_info
        elif rec.get("type") == "case":
            bench = rec["benchmark"]
            extra = bench.setdefault("extra_info", {})
            gpu = machine_info.get("gpu") if isinstance(machine_info.get("gpu"), dict) else None
            if not extra.get("gpu_uuid") and gpu and gpu.get("uuid"):
                # a log can span sessions on several machines: each case keeps the GPU it ran on
                extra["gpu_uuid"] = gpu["uuid"]
            by_name[bench["fullname"]] = bench
    return {"machine_info": machine_info, "commit_info": {}, "benchmarks": list(by_name.values()),
            "datetime": _now(), "version": "moeperf-results-log"}


def add_arguments(parser) -> None:
    parser.add_argument("log", metavar="LOG", help="results log written by --moeperf-results (JSON lines)")
    parser.add_argument("--json", metavar="OUT", help="write the finished cases as a pytest-benchmark JSON document")


def run(args) -> int:
    records = read_log(args.log)
    cases = [r for r in records if r.get("type") == "case"]
    failed = [r for r in records if r.get("type") == "failed"]
    for r in cases:
        b = r["benchmark"]
        x = b.get("extra_info", {})
        print(f"ok      {b['name']}: ttft_ms={_fmt(x.get('ttft_ms'))} tpot_ms={_fmt(x.get('tpot_ms'))} "
              f"decode_tokens_per_s={_fmt(x.get('decode_tokens_per_s'))} rounds={x.get('rounds')}")
    for r in failed:
        print(f"FAILED  {r.get('case')}: {r.get('error')}")
    print(f"{len(cases)} finished, {len(failed)} failed")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(to_benchmark_document(records), fh, indent=2, default=_json_default)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4g}"
