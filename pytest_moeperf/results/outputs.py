"""One up-front check of every file a run will write, before any model loads.

A results log whose parent is a file, a path that is a folder, an unwritable place, or two
outputs sharing one path used to surface after the first case was measured (an
INTERNALERROR that stopped the run) or silently overwrote one output with another. Pure
file-system checks, no torch; each problem is one ``ValueError`` line naming the option.
"""

from __future__ import annotations

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
    for option, path in files:
        if path is None:
            continue
        real = os.path.realpath(check_output_file(option, path))
        if real in seen:
            raise ValueError(f"{seen[real]} and {option} both write {path}; give them different paths "
                             f"(one would overwrite the other)")
        seen[real] = option
    if storage is not None:
        folder = os.path.realpath(check_output_folder(storage_option, storage) if saving else _abs(storage))
        for real, option in seen.items():
            if option in not_in_storage and real.endswith(".json") and real.startswith(folder + os.sep):
                raise ValueError(f"{option}: {real} is inside {storage_option} {storage}, where every *.json is "
                                 f"read as a stored run; write it outside that folder")


DEFAULT_VERDICT_JSON = ".moeperf/verdict.json"


def check_run_outputs(get, options, given_only: bool = False) -> None:
    """Every file a pytest run writes, from its options (``get``: config.getoption by dest).

    ``given_only``: only the paths given on the command line (pytest_configure, for every pytest
    run where the plugin is installed: a default path must not stop a run that measures nothing);
    the defaults are checked too once moeperf cases are collected, still before any model loads."""
    from pytest_moeperf.plugin.options import parse_path

    gate = parse_path("--moeperf-gate", get("moeperf_gate"))
    verdict = parse_path("--moeperf-verdict-json", get("moeperf_verdict_json"))
    bench_json = get("benchmark_json")  # pytest-benchmark 5.2: an open file; 5.3: a path
    files = [("--moeperf-results", options.results_path),
             ("--moeperf-verdict-json", verdict if gate != "off" else None),
             ("--benchmark-json", getattr(bench_json, "name", bench_json) if bench_json else None),
             ("--moeperf-merged-json", get("moeperf_merged_json"))]
    if given_only:
        files = [(o, p) for o, p in files if not ((o == "--moeperf-results" and get("moeperf_results") is None)
                                                  or (o == "--moeperf-verdict-json" and verdict == DEFAULT_VERDICT_JSON))]
    from pytest_moeperf.gate.baseline import storage_path

    folder = storage_path(get("benchmark_storage"))
    check_outputs(files, str(folder) if folder is not None else None,
                  not_in_storage=("--moeperf-verdict-json", "--moeperf-results"),
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
