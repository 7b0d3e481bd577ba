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


def options_fingerprint(options) -> str:
    """What makes two runs' records interchangeable beyond the case id: the measurement settings
    and the suite's version. --moeperf-resume only skips cases logged under the same print."""
    import dataclasses
    import hashlib

    from . import __version__

    keep = ("rounds", "warmup_rounds", "energy_window_s", "energy_windows", "weights", "seed", "gpu", "device")
    fields = {k: v for k, v in dataclasses.asdict(options).items() if k in keep}
    blob = json.dumps({"moeperf": __version__, **fields}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


class ResultsLog:
    def __init__(self, path: str, fingerprint: str | None = None):
        self.path = path
        self.fingerprint = fingerprint
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)

    def _append(self, record: dict) -> None:
        line = json.dumps(record, default=_json_default)
        with open(self.path, "a+b") as fh:
            # a crash mid-write leaves a torn last line: start on a fresh line so the torn
            # record stays one unreadable line and this one stays readable
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write((line + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())

    def session_started(self, machine_info: dict) -> None:
        self._append({"type": "session", "datetime": _now(), "fingerprint": self.fingerprint,
                      "machine_info": machine_info})

    def case_finished(self, benchmark: dict) -> None:
        self._append({"type": "case", "datetime": _now(), "fingerprint": self.fingerprint, "benchmark": benchmark})

    def case_failed(self, fullname: str, case_id: str, error: str, extra: dict | None = None) -> None:
        self._append({"type": "failed", "datetime": _now(), "fingerprint": self.fingerprint, "fullname": fullname,
                      "case": case_id, "error": error, **(extra or {})})


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
    """Records of a log's lines. A line that is not JSON can only be a write a crash interrupted
    (records are appended whole and fsynced): it is skipped with a warning, never fatal."""
    records, torn = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            torn.append(i + 1)
    if torn:
        import warnings

        warnings.warn(f"results log {where}: skipped {len(torn)} unreadable line(s) "
                      f"(interrupted writes): {', '.join(map(str, torn[:5]))}", stacklevel=2)
    return records


def finished_case_ids(path: str, fingerprint: str | None = None) -> set[str]:
    """Case ids whose latest record in the log is a finished case logged under ``fingerprint``
    (same settings and suite version): what --moeperf-resume skips. A later failure of the
    case, or a record from other settings, does not count."""
    latest: dict[str, dict] = {}
    for rec in read_log(path):
        if rec.get("type") == "case":
            case_id = (rec.get("benchmark") or {}).get("param")
        elif rec.get("type") == "failed":
            case_id = rec.get("case")
        else:
            continue
        if case_id:
            latest[str(case_id)] = rec
    return {cid for cid, rec in latest.items()
            if rec["type"] == "case" and (fingerprint is None or rec.get("fingerprint") == fingerprint)}


def to_benchmark_document(records: list[dict]) -> dict:
    """A pytest-benchmark-shaped document from a log; the newest record of each case wins."""
    machine_info = {}
    by_name: dict[str, dict] = {}
    failed: dict[str, dict] = {}
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
        elif rec.get("type") == "failed":
            by_name.pop(rec.get("fullname"), None)  # a later failure supersedes an earlier result
            failed[rec.get("fullname")] = {"case": rec.get("case"), "error": rec.get("error")}
    for name in by_name:
        failed.pop(name, None)  # ... and a later success a failure
    return {"machine_info": machine_info, "commit_info": {}, "benchmarks": list(by_name.values()),
            "moeperf_failed": [{"fullname": k, **v} for k, v in failed.items()],
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
        if "load_point" in x:  # a serving load point (benchmarks/test_serving.py)
            print(f"ok      {b['name']}: req_ttft_ms_p50={_fmt(x.get('req_ttft_ms_p50'))} "
                  f"req_tpot_ms_p50={_fmt(x.get('req_tpot_ms_p50'))} output_tokens_per_s={_fmt(x.get('output_tokens_per_s'))} "
                  f"requests={x.get('requests')} failed={x.get('failed_requests')}")
            continue
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
