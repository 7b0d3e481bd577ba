"""One up-front check of every file a run will write, before any model loads.

A results log whose parent is a file, a path that is a folder, an unwritable place, or two
outputs sharing one path used to surface after the first case was measured (an
INTERNALERROR that stopped the run) or silently overwrote one output with another. Pure
file-system checks, no torch; each problem is one ``ValueError`` line naming the option.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence


def _abs(path: str) -> str:
    return os.path.abspath(os.path.expanduser(str(path)))


def _first_existing(path: str) -> str:
    p = path
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def check_output_file(option: str, path: str) -> str:
    """Raise ValueError unless ``path`` can be written as a file; returns its absolute path."""
    if path is None or not str(path).strip():
        raise ValueError(f"{option}: empty path; give a file path or leave {option} out for its default")
    full = _abs(path)
    if os.path.isdir(full):
        raise ValueError(f"{option}: {path} is a folder; give a file path, e.g. {os.path.join(str(path), 'out')}")
    if os.path.exists(full):
        if not os.access(full, os.W_OK):
            raise ValueError(f"{option}: {path} is not writable; fix its permissions or give another path")
        return full
    anchor = _first_existing(os.path.dirname(full))
    if not os.path.isdir(anchor):
        raise ValueError(f"{option}: cannot create {path}: {anchor} is a file, not a folder; give another path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot create {path}: the folder {anchor} is not writable; give another path")
    return full


def check_output_folder(option: str, path: str) -> str:
    """Raise ValueError unless ``path`` is (or can be created as) a writable folder."""
    full = _abs(path)
    anchor = _first_existing(full)
    if not os.path.isdir(anchor):
        raise ValueError(f"{option}: {anchor} is a file, not a folder; give a folder path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: the folder {anchor} is not writable; give another path")
    return full


def check_outputs(files: Sequence[tuple[str, str | None]], storage: str | None = None,
                  not_in_storage: Sequence[str] = (), storage_option: str = "--benchmark-storage",
                  saving: bool = True) -> None:
    """Check each ``(option, path)`` a run writes (None: that output is off) and that no two share a
    path. ``storage``, when given, is pytest-benchmark's storage folder: the outputs named in
    ``not_in_storage`` (files that are not runs) must lie outside it, since the gate reads every
    ``*.json`` there as a stored run; with ``saving`` (--benchmark-save/--benchmark-autosave) it
    must also be a folder that can be written."""
    seen: dict[str, str] = {}
    typed: dict[str, str] = {}
    for option, path in files:
        if path is None:
            continue
        full = check_output_file(option, path)
        real = os.path.realpath(full)
        if real in seen:
            # a link or another spelling: name the file both reach, as the user would look for it
            same = "" if os.path.normpath(str(path)) == os.path.normpath(typed[real]) else \
                f" ({seen[real]} {typed[real]}, {option} {path}: the same file {real})"
            raise ValueError(f"{seen[real]} and {option} both write {path}{same}; give them different paths "
                             f"(one would overwrite the other)")
        seen[real] = option
        typed[real] = str(path)
    if storage is not None:
        folder = os.path.realpath(check_output_folder(storage_option, storage) if saving else _abs(storage))
        for real, option in seen.items():
            if option in not_in_storage and real.endswith(".json") and real.startswith(folder + os.sep):
                raise ValueError(f"{option}: {real} is inside {storage_option} {storage}, where every *.json is "
                                 f"read as a stored run; write it outside that folder")


# Where a run writes, when not told otherwise (the options' help, the xdist controller and the gate read these).
DEFAULT_RESULTS_PATH = ".moeperf/results.jsonl"
class WriteError(OSError):
    """An output that could not be written (a full disk, a lost mount ...): one line naming the file."""

    def __str__(self) -> str:
        return str(self.strerror)


def finite_json(value):
    """``value`` with every non-finite float (NaN, infinity) as None: JSON has no NaN, and strict
    readers refuse the literal Python writes. Containers are copied, leaves shared."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def write_atomic(path: str | os.PathLike[str], text) -> None:
    """Write a whole document so that readers see the old file or the new one, never a torn one: a
    temporary file beside it, flushed to disk, then renamed over it (os.replace). On failure the
    temporary file is removed, ``path`` is left as it was, and WriteError names ``path``. ``text``: a
    string, or an iterable of strings written one after the other (a document never held whole)."""
    import tempfile

    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for chunk in ([text] if isinstance(text, str) else text):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise WriteError(exc.errno, f"{target}: cannot write ({_why(exc)}); it is left as it was: free space "
                                    f"or give another path") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append to a file that is added to (a CI step summary); WriteError names it on failure."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise WriteError(exc.errno, f"{os.fspath(path)}: cannot append ({_why(exc)}); free space or give "
                                    f"another path") from None


DEFAULT_VERDICT_JSON = ".moeperf/verdict.json"
DEFAULT_SERVING_RECORDS = ".moeperf/serving-records.jsonl"


def check_run_outputs(get, options, given_only: bool = False, serving: bool = False) -> None:
    """Every file a pytest run writes, from its options (``get``: config.getoption by dest).

    ``given_only``: only the paths given on the command line (pytest_configure, for every pytest
    run where the plugin is installed: a default path must not stop a run that measures nothing);
    the defaults are checked too once moeperf cases are collected, still before any model loads.
    ``serving``: serving load points are collected, so the request records' default path is written too.
    ``options`` None: no moeperf option was given (pytest_configure), so no results path of its own."""
    from pytest_moeperf.settings.parsers import parse_path

    gate = parse_path("--moeperf-gate", get("moeperf_gate"))
    verdict = parse_path("--moeperf-verdict-json", get("moeperf_verdict_json"))
    from pytest_moeperf.results.bench_api import json_option_path

    files = [("--moeperf-results", options.results_path if options is not None else None),
             ("--moeperf-verdict-json", verdict if gate != "off" else None),
             ("--benchmark-json", json_option_path(get("benchmark_json"))),
             ("--moeperf-merged-json", get("moeperf_merged_json")),
             ("--moeperf-serving-records", get("moeperf_serving_records") or (DEFAULT_SERVING_RECORDS if serving else None))]
    if given_only:
        files = [(o, p) for o, p in files if not ((o == "--moeperf-results" and get("moeperf_results") is None)
                                                  or (o == "--moeperf-verdict-json" and verdict == DEFAULT_VERDICT_JSON))]
    from pytest_moeperf.results.documents import storage_path

    folder = storage_path(get("benchmark_storage"))
    check_outputs(files, str(folder) if folder is not None else None,
                  not_in_storage=("--moeperf-verdict-json", "--moeperf-results", "--moeperf-serving-records"),
                  saving=bool(get("benchmark_save") or get("benchmark_autosave")))


# --- pytest-benchmark's fixture and JSON ------------------------------------------------------

def drop_unfinished(benchmarks: list, started: set, finished: set) -> list:
    """pytest-benchmark's entries without those whose case began here but never finished."""
    return [b for b in benchmarks if not (b.get("fullname") in started and b.get("fullname") not in finished)]


def quiet_unused_fixture(fixture) -> None:
    """A case that failed before its rounds left pytest-benchmark's fixture unused, and its
    teardown would warn "Benchmark fixture was not used at all in this test!". The fixture's
    own ``skipped`` flag (set by pytest-benchmark's makereport, read by its teardown) is what
    silences that warning; tests/test_bad_input_e2e.py::test_interrupted_run_then_resume
    fails if pytest-benchmark changes it."""
    if fixture is not None and getattr(fixture, "stats", None) is None and hasattr(fixture, "skipped"):
        fixture.skipped = True


def drop_unfinished_fixture(fixture) -> None:
    """A benchmark interrupted inside its only round (Ctrl-C mid serving point) has no data, and
    pytest-benchmark 5.2.3/5.3.1 would crash at the session's end summarising it (``min() arg is an
    empty sequence``), losing --benchmark-json. ``has_error`` is the fixture's own flag for "leave me
    out": its ``pytest_benchmark_generate_json`` skips such benchmarks (it sets the flag itself when
    the target raises an Exception, which KeyboardInterrupt is not).
    tests/test_bench_api.py::test_an_interrupted_benchmark_is_left_out_of_the_json pins it."""
    stats = getattr(fixture, "stats", None)
    if hasattr(fixture, "has_error") and (stats is None or not getattr(stats.stats, "data", None)):
        fixture.has_error = True


def failure_line(report) -> str:
    """The one line a failed case's record keeps: the test's last ``E`` line (or ``Failed:``), else its last line."""
    text = str(report.longrepr) if report.longrepr is not None else "failed"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("E ") or "Failed:" in ln:
            return ln.removeprefix("E").strip()
    return lines[-1] if lines else "failed"
