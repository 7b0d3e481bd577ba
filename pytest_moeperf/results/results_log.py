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


FINGERPRINT_FIELDS = ("rounds", "warmup_rounds", "energy_window_s", "energy_windows", "weights", "seed", "gpu",
                      "device", "warmup_s", "gc")
# added after logs were written: in the print only when set off their default, so earlier logs keep theirs
LATER_FIELDS = ("warmup_s", "gc")


def options_settings(options) -> dict:
    """The measurement settings that make two runs' records interchangeable beyond the case id."""
    import dataclasses

    from pytest_moeperf import __version__

    defaults = {f.name: f.default for f in dataclasses.fields(options)}
    fields = {k: v for k, v in dataclasses.asdict(options).items()
              if k in FINGERPRINT_FIELDS and not (k in LATER_FIELDS and v == defaults[k])}
    return json.loads(json.dumps({"moeperf": __version__, **fields}, sort_keys=True, default=str))


def options_fingerprint(options) -> str:
    """A short hash of options_settings: --moeperf-resume only skips cases logged under the same print."""
    import hashlib

    blob = json.dumps(options_settings(options), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


class ResultsLog:
    def __init__(self, path: str, fingerprint: str | None = None, settings: dict | None = None):
        self.path = path
        self.fingerprint = fingerprint
        self.settings = settings
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:  # the plugin checks this up front (outputs.py); the API gets one line too
            raise ValueError(f"results log {path}: cannot create its folder {parent} ({exc.strerror or exc})") from None

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
        record = {"type": "session", "datetime": _now(), "fingerprint": self.fingerprint,
                  "machine_info": machine_info}
        if self.settings is not None:  # lets --moeperf-resume and `results` name what changed
            record["settings"] = self.settings
        self._append(record)

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


class LogError(ValueError):
    """A results log that cannot be read: one line naming the file, the line and the fix."""


RECORD_TYPES = ("session", "case", "failed")


def read_log(path: str, notes: list[str] | None = None) -> list[dict]:
    """Records of a log, each checked for shape. A torn record (a write a crash cut short) is
    skipped with a note; anything else unreadable is a LogError. ``notes`` collects the notes
    (None: they become a warning)."""
    if not os.path.exists(path):
        raise LogError(f"results log {path} does not exist; pass the file given to --moeperf-results")
    if os.path.isdir(path):
        raise LogError(f"results log {path} is a folder; pass the file given to --moeperf-results")
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    _refuse_benchmark_document(text, path)
    return parse_log_lines(text.splitlines(), path, notes, strict=True)


def _refuse_benchmark_document(text: str, where: str) -> None:
    try:
        doc = json.loads(text)
    except ValueError:
        return
    if isinstance(doc, dict) and "benchmarks" in doc:
        raise LogError(f"{where} is a pytest-benchmark JSON document, not a results log; give it to "
                       f"compare or report directly")


def looks_like_results_log(text: str) -> bool:
    """Whether ``text`` reads as a results log (its first record is one): for the loaders of
    pytest-benchmark documents, to point at ``results LOG --json`` instead of a JSON error."""
    for line in text.splitlines():
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                return False
            return isinstance(rec, dict) and rec.get("type") in RECORD_TYPES
    return False


def _is_torn(line: str, exc: json.JSONDecodeError) -> bool:
    """A record cut short by a crash: an object whose JSON fails only in its last, unfinished
    token (a string left open, or a value, number or escape the line ends inside)."""
    rest = line[exc.pos:].rstrip()
    return line.lstrip().startswith("{") and (exc.msg.startswith("Unterminated string")
                                              or not any(ch in rest for ch in ',:{}[]" \t'))


def parse_log_lines(lines: list[str], where: str, notes: list[str] | None = None, strict: bool = False) -> list[dict]:
    """Records of a log's lines. Records are appended whole and fsynced, so a line that is the
    start of a record cut short can only be a write a crash interrupted (a later session appends
    after it on a fresh line): it is skipped with a note. Any other line that is not a record
    (garbage, JSON that is not an object; with ``strict``, a record of the wrong shape) is a LogError."""
    records, torn = [], []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if _is_torn(line, exc):
                torn.append(i)
                continue
            raise LogError(f"{where}: line {i} is not JSON ({exc.msg}); this is not a results log written by "
                           f"--moeperf-results, or line {i} was edited: remove that line") from None
        problem = record_problem(rec) if strict else (None if isinstance(rec, dict) else record_problem(rec))
        if problem:
            raise LogError(f"{where}: line {i} {problem}; this is not a results log written by --moeperf-results, "
                           f"or line {i} was edited: remove that line")
        if not strict or rec["type"] in RECORD_TYPES:  # other types: written by a newer version, left out
            records.append(rec)
    if torn:
        note = (f"{where}: skipped {len(torn)} record(s) cut short by an interrupted write "
                f"(line {', '.join(map(str, torn[:5]))}{' ...' if len(torn) > 5 else ''})")
        if notes is None:
            import warnings

            warnings.warn(note, stacklevel=2)
        else:
            notes.append(note)
    return records


def record_problem(rec) -> str | None:
    """Why ``rec`` is not a results-log record, or None."""
    if not isinstance(rec, dict):
        return f"is JSON {type(rec).__name__}, not a record (an object)"
    kind = rec.get("type")
    if not isinstance(kind, str):
        if "benchmarks" in rec:
            return "is a pytest-benchmark document, not a record (give that file to compare or report)"
        return "has no 'type'"
    if kind == "case":
        b = rec.get("benchmark")
        if not isinstance(b, dict):
            return "is a case record without a 'benchmark' object"
        if not isinstance(b.get("fullname"), str) or not b.get("fullname"):
            return "is a case record whose benchmark has no 'fullname'"
        if b.get("name") is not None and not isinstance(b.get("name"), str):
            return "is a case record whose benchmark name is not text"
        if not isinstance(b.get("extra_info", {}), dict):
            return "is a case record whose benchmark.extra_info is not an object"
        if b.get("param") is not None and not isinstance(b.get("param"), str):
            return "is a case record whose benchmark.param is not a case id"
    elif kind == "failed":
        for key in ("case", "fullname"):
            if not isinstance(rec.get(key), str) or not rec.get(key):
                return f"is a failed record without a '{key}'"
        if not isinstance(rec.get("error", ""), (str, type(None))):
            return "is a failed record whose error is not text"
    elif kind == "session":
        if not isinstance(rec.get("machine_info", {}), (dict, type(None))):
            return "is a session record whose machine_info is not an object"
        if not isinstance(rec.get("settings", {}), (dict, type(None))):
            return "is a session record whose settings is not an object"
    if rec.get("fingerprint") is not None and not isinstance(rec.get("fingerprint"), str):
        return "has a fingerprint that is not text"
    return None


def _latest_by_case(records: list[dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for rec in records:
        if rec["type"] == "case":
            case_id = rec["benchmark"].get("param")
        elif rec["type"] == "failed":
            case_id = rec["case"]
        else:
            continue
        if case_id:
            latest[str(case_id)] = rec
    return latest


def finished_case_ids(path: str, fingerprint: str | None = None, notes: list[str] | None = None) -> set[str]:
    """Case ids whose latest record in the log is a finished case logged under ``fingerprint``
    (same settings and suite version): what --moeperf-resume skips. A later failure of the
    case, or a record from other settings, does not count."""
    return {cid for cid, rec in _latest_by_case(read_log(path, notes)).items()
            if rec["type"] == "case" and (fingerprint is None or rec.get("fingerprint") == fingerprint)}


def _settings_by_fingerprint(records: list[dict]) -> dict[str, dict]:
    return {r["fingerprint"]: r["settings"] for r in records
            if r["type"] == "session" and r.get("fingerprint") and isinstance(r.get("settings"), dict)}


def _differences(old: dict | None, new: dict) -> str:
    if not old:
        return "settings or suite version (not recorded in that session)"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "settings"


def resume_plan(options) -> tuple[set[str], list[str]]:
    """(case ids --moeperf-resume skips, notes for the terminal): the notes say which logged cases
    are measured again because they were logged under other settings, and which lines were torn."""
    path = options.results_path
    if not os.path.exists(path):
        return set(), [f"{path} does not exist yet: every case runs"]
    notes: list[str] = []
    records = read_log(path, notes)
    fingerprint = options_fingerprint(options)
    latest = _latest_by_case(records)
    done = {cid for cid, rec in latest.items() if rec["type"] == "case" and rec.get("fingerprint") == fingerprint}
    other = sorted(cid for cid, rec in latest.items() if rec["type"] == "case" and rec.get("fingerprint") != fingerprint)
    if other:
        settings = _settings_by_fingerprint(records)
        prints = {latest[c].get("fingerprint") for c in other}
        why = "; ".join(_differences(settings.get(fp), options_settings(options)) for fp in sorted(prints, key=str))
        notes.append(f"{len(other)} logged case(s) were finished under other settings ({why}) and are measured "
                     f"again: {', '.join(other[:8])}{' ...' if len(other) > 8 else ''}")
    return done, notes


def mixed_settings_note(records: list[dict]) -> str | None:
    """A warning when the finished cases were logged under more than one set of settings."""
    prints = {r.get("fingerprint") for r in records if r["type"] == "case"}
    if len(prints) <= 1:
        return None
    settings = _settings_by_fingerprint(records)
    known = [settings[p] for p in prints if p in settings]
    diff = ""
    if len(known) >= 2:
        keys = sorted(k for k in set().union(*known) if len({json.dumps(s.get(k), sort_keys=True) for s in known}) > 1)
        diff = f" (they differ in {', '.join(keys)})" if keys else ""
    return (f"the finished cases were logged under {len(prints)} different settings{diff}; the rebuilt run mixes "
            f"them: compare like with like, or rerun the cases under one setting")


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
    if args.json:
        from pytest_moeperf.results.outputs import check_output_file

        check_output_file("--json", args.json)
        if os.path.realpath(args.json) == os.path.realpath(args.log):
            raise ValueError(f"--json {args.json} is the log itself; give another path")
    notes: list[str] = []
    records = read_log(args.log, notes)
    if not records:
        raise LogError(f"{args.log} holds no records; pass the file given to --moeperf-results")
    cases = [r for r in records if r["type"] == "case"]
    failed = [r for r in records if r["type"] == "failed"]
    for r in cases:
        b = r["benchmark"]
        x = b.get("extra_info") or {}
        if "load_point" in x:  # a serving load point (benchmarks/test_serving.py)
            print(f"ok      {b.get('name') or b['fullname']}: req_ttft_ms_p50={_fmt(x.get('req_ttft_ms_p50'))} "
                  f"req_tpot_ms_p50={_fmt(x.get('req_tpot_ms_p50'))} output_tokens_per_s={_fmt(x.get('output_tokens_per_s'))} "
                  f"requests={x.get('requests')} failed={x.get('failed_requests')}")
            continue
        print(f"ok      {b.get('name') or b['fullname']}: ttft_ms={_fmt(x.get('ttft_ms'))} tpot_ms={_fmt(x.get('tpot_ms'))} "
              f"decode_tokens_per_s={_fmt(x.get('decode_tokens_per_s'))} rounds={x.get('rounds')}")
    for r in failed:
        print(f"FAILED  {r.get('case')}: {r.get('error')}")
    print(f"{len(cases)} finished, {len(failed)} failed")
    mixed = mixed_settings_note(records)
    for note in notes + ([mixed] if mixed else []):
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(to_benchmark_document(records), fh, indent=2, default=_json_default)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _fmt(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "—" if v is None else str(v)
    return f"{v:.4g}"
