"""pytest-benchmark, through its public hooks and options (read from both 5.2.3 and 5.3.1).

Machine and commit info, the JSON document and its post-processing come from pytest-benchmark's
own hooks (``pytest_benchmark_generate_machine_info`` ... ``pytest_benchmark_update_json``), so
other plugins' hook implementations apply to documents written here as to pytest-benchmark's.
The one thing no hook or option gives is the configured storage (``--benchmark-storage`` loaded
with its machine id, netrc and logger): ``benchmark_storage`` is the only private access, and
tests/test_bench_api.py fails loudly when pytest-benchmark changes it.
"""

from __future__ import annotations

import copy
import os
from typing import Any


def benchmark_storage(config) -> Any:
    """pytest-benchmark's storage object (``.save(doc, name)``, ``.load(...)``, ``str()`` is its path).

    The only private access to pytest-benchmark: its session is the attribute ``_benchmarksession``
    of the config (5.2.3 and 5.3.1), and no public hook hands out the storage it built from
    ``--benchmark-storage``. None when pytest-benchmark is not active.
    """
    session = getattr(config, "_benchmarksession", None)
    return getattr(session, "storage", None)


def machine_info(config) -> dict:
    info = config.hook.pytest_benchmark_generate_machine_info(config=config)
    config.hook.pytest_benchmark_update_machine_info(config=config, machine_info=info)
    return info


def commit_info(config) -> dict:
    info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=info)
    return info


class StoredBenchmark:
    """A benchmark already in JSON form, shaped as the hooks expect one (``has_error``, ``as_dict``)."""

    has_error = False

    def __init__(self, bench: dict):
        self.bench = bench
        self.name, self.fullname = bench.get("name"), bench.get("fullname")
        self.group, self.extra_info = bench.get("group"), bench.get("extra_info", {})

    def as_dict(self, include_data: bool = True, **_ignored) -> dict:
        out = copy.deepcopy(self.bench)
        if not include_data:
            out.get("stats", {}).pop("data", None)
        return out


def document(config, benchmarks: list[dict], machine: dict, commit: dict, include_data: bool = True) -> dict:
    """A pytest-benchmark JSON document for benchmarks in JSON form, by pytest-benchmark's own hooks."""
    stored = [StoredBenchmark(b) for b in benchmarks]
    doc = config.hook.pytest_benchmark_generate_json(config=config, benchmarks=stored, include_data=include_data,
                                                     machine_info=machine, commit_info=commit)
    config.hook.pytest_benchmark_update_json(config=config, benchmarks=stored, output_json=doc)
    return doc


def write_json_option(config, text: str) -> str | None:
    """Write ``text`` where ``--benchmark-json`` points; returns that path (None without the option).

    pytest-benchmark 5.3 keeps the option as a path and opens it when it writes; 5.2 parsed it
    with ``argparse.FileType('wb')``, an open handle (the file already created, empty).
    """
    target = config.getoption("benchmark_json", None)
    if target is None:
        return None
    if hasattr(target, "write"):
        with target:
            target.write(text.encode())
        return str(getattr(target, "name", "--benchmark-json"))
    path = os.fspath(target)
    with open(path, "wb") as fh:
        fh.write(text.encode())
    return path


def save_name(config) -> str | None:
    """The run name of ``--benchmark-save NAME`` / ``--benchmark-autosave`` (its tag), else None."""
    return config.getoption("benchmark_save", None) or config.getoption("benchmark_autosave", None) or None


def incompatible_versions(pytest_version: str, benchmark_version: str) -> str | None:
    """Why this pytest / pytest-benchmark pair cannot run a benchmark, with the fix; None if it can.

    pytest-benchmark 5.2.x reads ``node._nodeid``, which pytest 9.2 removed: every benchmark
    would error with "'Function' object has no attribute '_nodeid'".
    """
    def major_minor(v: str) -> tuple[int, int]:
        parts = (v.split(".") + ["0", "0"])[:2]
        return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)

    if major_minor(benchmark_version) < (5, 3) and major_minor(pytest_version) >= (9, 2):
        return (f"pytest-benchmark {benchmark_version} does not run under pytest {pytest_version}; "
                "pip install -U 'pytest-benchmark>=5.3' (or 'pytest<9.2')")
    return None
