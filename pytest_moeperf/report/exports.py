"""CSV exports beside the report, for a spreadsheet or pandas (AIPerf's profile_export as the example).

- ``cases.csv``: one row per single-request case (failed ones too, with their error): its axes and
  every registry metric of a case (schema.METRICS, scope "case") the run holds, in the metric's
  unit, which its column name carries (``ttft_ms``, ``energy_j``, ``peak_allocated_bytes``).
- ``serving_points.csv``: one row per serving load point: series, load, and every serving metric
  of the registry (scope "serving") plus the percentile keys, as extra_info holds them.
- ``requests.csv`` (``--records FILE.jsonl``): one row per request of the serving records
  (``--moeperf-serving-records``): its load point, times and the per-request TTFT, TPOT, E2E and
  queue wait of serving/metrics.request_latencies, the same functions the load points use.
Numbers are written as Python's repr (full precision); a missing value is an empty cell.

The header row names each column by its stable key and, where the value has a unit, the registry's
unit after it in parentheses: ``ttft_ms (ms)``, ``decode_tokens_per_s (tokens/s)``, ``context_tokens
(tokens)``, ``model`` (schema.csv_header: METRICS for metrics, KEYS for the descriptive keys). A key the
registry does not know (another version's extra_info) is written bare. The key is the text before
`` (``; docs/report.md says so.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pytest_moeperf.metrics.schema import METRICS, csv_header

CASE_KEYS = ["case", "model", "architecture", "context_tokens", "new_tokens", "dtype", "backend", "decoding",
             "batch_size", "device_name", "failed", "error"]
POINT_KEYS = ["model", "series", "load_mode", "load_value", "load_point", "requests", "requests_ok",
              "failed_requests", "duration_s"]
REQUEST_KEYS = ["point_id", "point", "request_id", "user", "input_tokens", "max_new_tokens", "output_tokens",
                "scheduled_s", "sent_s", "first_token_s", "end_s", "ttft_ms", "tpot_ms", "e2e_ms", "queue_wait_ms",
                "error"]


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    return v


def _write(path: Path, header: list[str], rows: list[dict]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([csv_header(k) for k in header])
        for row in rows:
            w.writerow([_cell(row.get(k)) for k in header])
    tmp.replace(path)  # a reader never sees half a file
    return path


def _present(dicts: list[dict], keys: list[str]) -> list[str]:
    return [k for k in keys if any(d.get(k) is not None for d in dicts)]


def write_cases(rows, out: Path) -> Path | None:
    """``cases.csv`` from report rows (rows.Row); None when there are none."""
    if not rows:
        return None
    dicts = [{**r.ei, "case": r.case_id, "model": r.model, "context_tokens": r.context, "new_tokens": r.new_tokens,
              "failed": bool(r.failed), "error": r.error if r.failed else None} for r in rows]
    metrics = [m.key for m in METRICS if m.scope == "case"]
    return _write(Path(out) / "cases.csv", _present(dicts, CASE_KEYS) + _present(dicts, metrics), dicts)


def write_points(benches: list[dict], out: Path) -> Path | None:
    """``serving_points.csv`` from serving load points; None when there are none."""
    from pytest_moeperf.report.serving_view import series_of

    if not benches:
        return None
    dicts = [{**b["extra_info"], "series": series_of(b["extra_info"])} for b in benches]
    metrics = sorted({k for d in dicts for k, v in d.items() if isinstance(v, (int, float))
                      and not isinstance(v, bool) and k not in POINT_KEYS})
    serving = [m.key for m in METRICS if m.scope == "serving"]
    order = [k for k in serving if k in metrics] + [k for k in metrics if k not in serving]
    return _write(Path(out) / "serving_points.csv", _present(dicts, POINT_KEYS) + order, dicts)


def read_records(paths: list[str]) -> list[dict]:
    """The request records of serving records files (JSON lines); ValueError names a bad line."""
    records = []
    for p in paths:
        try:
            lines = Path(p).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"{p}: cannot read ({exc.strerror or exc})") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise ValueError(f"{p}:{n}: not JSON; give a --moeperf-serving-records file") from None
            if not isinstance(rec, dict) or "sent_s" not in rec:
                raise ValueError(f"{p}:{n}: not a request record (no sent_s); give a --moeperf-serving-records file")
            records.append(rec)
    return records


def write_requests(records: list[dict], out: Path) -> Path | None:
    """``requests.csv``: each record with its per-request latencies; None when there are none."""
    from dataclasses import fields

    from pytest_moeperf.serving.loadgen import RequestRecord
    from pytest_moeperf.serving.metrics import request_latencies

    if not records:
        return None
    names = {f.name for f in fields(RequestRecord)}
    rows = []
    for rec in records:
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in rec.items() if k in names}
        try:
            lat = request_latencies(RequestRecord(**kw))
        except TypeError as exc:  # a field missing or of another version's record
            raise ValueError(f"request record {rec.get('request_id')!r}: {exc}") from None
        rows.append({**rec, **{k: v for k, v in lat.items() if k != "itl_ms"}})
    return _write(Path(out) / "requests.csv", REQUEST_KEYS, rows)
