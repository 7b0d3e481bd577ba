"""An append-only JSON-lines log of finished cases, so no completed measurement is lost.

Each case is appended (and flushed to disk) the moment it finishes, passed or failed; a
Ctrl-C, a crash or a job time-out leaves every finished case on disk. ``python -m
pytest_moeperf results LOG`` lists them and rebuilds a pytest-benchmark JSON document
from them, which the gate and the report read like any other run.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from typing import Iterable, Iterator

from pytest_moeperf.results.documents import CASE, RECORD_TYPES, benchmark_kind


FINGERPRINT_FIELDS = ("rounds", "warmup_rounds", "energy_window_s", "energy_windows", "weights", "seed", "gpu",
                      "device", "warmup_s", "gc", "static_cache")
# added after logs were written: in the print only when set off their default, so earlier logs keep theirs
LATER_FIELDS = ("warmup_s", "gc", "static_cache")


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


class LogWriteError(OSError):
    """A record that could not be appended (a full disk ...): one line naming the log."""

    def __str__(self) -> str:
        return str(self.strerror)


class ResultsLog:
    def __init__(self, path: str, fingerprint: str | None = None, settings: dict | None = None):
        self.path = path
        self.fingerprint = fingerprint
        self.settings = settings
        # called with the LogWriteError; when it returns True the error is handled there (the pytest
        # plugin stops the run after the current test) and not raised
        self.on_write_error = None
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:  # the plugin checks this up front (outputs.py); the API gets one line too
            raise ValueError(f"results log {path}: cannot create its folder {parent} ({exc.strerror or exc})") from None

    def _append(self, record: dict) -> None:
        line = json.dumps(record, default=_json_default)
        try:
            self._write_line(line)
        except OSError as exc:
            err = LogWriteError(exc.errno, f"--moeperf-results {self.path}: cannot append a record "
                                           f"({exc.strerror or exc})")
            if self.on_write_error is not None and self.on_write_error(err):
                return
            raise err from None

    def _write_line(self, line: str) -> None:
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


def json_text(doc) -> str:
    """A whole document as strict JSON: a NaN or infinite number (a ratio of nothing, an unset
    figure) is written as null, never as the literal NaN that JSON does not allow and other tools
    refuse; docs/metrics.md says so."""
    from pytest_moeperf.results.outputs import finite_json

    def default(obj):  # numpy scalars and the like: their value, null where not finite
        value = _json_default(obj)
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return json.dumps(finite_json(doc), indent=2, allow_nan=False, default=default)


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


class LogError(ValueError):
    """A results log that cannot be read: one line naming the file, the line and the fix."""




def read_log(path: str, notes: list[str] | None = None) -> list[dict]:
    """Records of a log, each checked for shape. A torn record (a write a crash cut short) is
    skipped with a note; anything else unreadable is a LogError. ``notes`` collects the notes
    (None: they become a warning)."""
    return [rec for rec, _ in iter_log(path, notes)]


def iter_log(path: str, notes: list[str] | None = None) -> Iterator[tuple[dict, tuple[int, int]]]:
    """read_log's records one at a time, each with where it is (the byte offset of its line, the
    record's index among that line's parts; record_at reads it again): a log is read line by line,
    never held whole. A file that is not a log fails at its first bad line."""
    if not os.path.exists(path):
        raise LogError(f"results log {path} does not exist; pass the file given to --moeperf-results")
    if os.path.isdir(path):
        raise LogError(f"results log {path} is a folder; pass the file given to --moeperf-results")
    with open(path, "rb") as fh:
        where: list[tuple[int, int]] = []

        def lines():
            offset = 0
            for raw in fh:  # split like str.splitlines on the whole text (a \r or \x0c inside a line too)
                for k, line in enumerate(raw.decode("utf-8", errors="replace").splitlines()):
                    where.append((offset, k))
                    yield line
                offset += len(raw)

        try:
            for rec in iter_log_lines(lines(), path, notes, strict=True):
                yield rec, where[-1]
                where.clear()
        except LogError:
            with open(path, encoding="utf-8", errors="replace") as whole:  # only on the way out: name a
                _refuse_benchmark_document(whole.read(), path)  # pytest-benchmark document as such
            raise


def record_at(fh, where: tuple[int, int]) -> dict:
    """The record iter_log found at ``where``, read again from the log opened as ``fh`` (binary): a log
    is only appended to, so what iter_log saw is still there."""
    fh.seek(where[0])
    return json.loads(fh.readline().decode("utf-8", errors="replace").splitlines()[where[1]])


def _refuse_benchmark_document(text: str, where: str) -> None:
    try:
        doc = json.loads(text)
    except ValueError:
        return
    if isinstance(doc, dict) and "benchmarks" in doc:
        raise LogError(f"{where} is a pytest-benchmark JSON document, not a results log; give it to "
                       f"compare or report directly")


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
    return list(iter_log_lines(lines, where, notes, strict))


def iter_log_lines(lines: Iterable[str], where: str, notes: list[str] | None = None,
                   strict: bool = False) -> Iterator[dict]:
    """parse_log_lines one record at a time (the notes come when the lines are done)."""
    torn = []
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
            yield rec
    if torn:
        note = (f"{where}: skipped {len(torn)} record(s) cut short by an interrupted write "
                f"(line {', '.join(map(str, torn[:5]))}{' ...' if len(torn) > 5 else ''})")
        if notes is None:
            import warnings

            warnings.warn(note, stacklevel=2)
        else:
            notes.append(note)


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


class _Latest:
    """What --moeperf-resume needs of a log, gathered one record at a time (the log is never held): per case id
    its latest record's type, fingerprint and kind of benchmark, and each fingerprint's settings."""

    def __init__(self, records) -> None:
        self.by_case: dict[str, tuple[str, str | None, str | None]] = {}
        self.settings: dict[str, dict] = {}
        for rec in records:
            kind, case_id = rec["type"], None
            if kind == "case":
                case_id = rec["benchmark"].get("param")
            elif kind == "failed":
                case_id = rec["case"]
            elif kind == "session" and rec.get("fingerprint") and isinstance(rec.get("settings"), dict):
                self.settings[rec["fingerprint"]] = rec["settings"]
            if case_id:
                self.by_case[str(case_id)] = (kind, rec.get("fingerprint"),
                                              benchmark_kind(rec["benchmark"]) if kind == "case" else None)

    @classmethod
    def of_log(cls, path: str, notes: list[str] | None = None) -> "_Latest":
        return cls(rec for rec, _ in iter_log(path, notes))


def finished_case_ids(path: str, fingerprint: str | None = None, notes: list[str] | None = None) -> set[str]:
    """Case ids whose latest record in the log is a finished case logged under ``fingerprint``
    (same settings and suite version): what --moeperf-resume skips. A later failure of the
    case, or a record from other settings, does not count."""
    return {cid for cid, (kind, fp, _) in _Latest.of_log(path, notes).by_case.items()
            if kind == "case" and (fingerprint is None or fp == fingerprint)}


def _differences(old: dict | None, new: dict) -> str:
    if not old:
        return "settings or suite version (not recorded in that session)"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys) or "settings"


def resume_plan(options) -> tuple[set[str], list[str]]:
    """(case ids --moeperf-resume skips, notes for the terminal): the notes say which logged cases
    are measured again because they were logged under other settings, and which lines were torn."""
    return resume_plan_for(options.results_path, options_fingerprint(options), CASE, options_settings(options))


def resume_plan_for(path: str, fingerprint: str, kind: str = CASE,
                    settings: dict | None = None) -> tuple[set[str], list[str]]:
    """resume_plan for one kind of benchmark (results/documents.py: CASE or SERVING), each kind under its
    own fingerprint; ``settings``: this run's, to say how another fingerprint differs (None: unknown)."""
    what = "case(s)" if kind == CASE else "serving point(s)"
    if not os.path.exists(path):
        return set(), [f"{path} does not exist yet: every {what[:-3]} runs"]
    notes: list[str] = []
    log = _Latest.of_log(path, notes)
    latest = {cid: rec for cid, rec in log.by_case.items()  # each kind resumes on its own
              if rec[0] != "case" or rec[2] == kind}
    done = {cid for cid, (t, fp, _) in latest.items() if t == "case" and fp == fingerprint}
    other = sorted(cid for cid, (t, fp, _) in latest.items() if t == "case" and fp != fingerprint)
    if other:
        logged = log.settings if settings is not None else {}
        prints = {latest[c][1] for c in other}
        why = ("; ".join(_differences(logged.get(fp), settings) for fp in sorted(prints, key=str))
               if settings is not None else "settings or suite version")
        notes.append(f"{len(other)} logged {what} were finished under other settings ({why}) and are measured "
                     f"again: {', '.join(other[:8])}{' ...' if len(other) > 8 else ''}")
    return done, notes
