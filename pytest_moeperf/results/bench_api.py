"""pytest-benchmark, through its public hooks and options (read from both 5.2.3 and 5.3.1).

Machine and commit info, the JSON document and its post-processing come from pytest-benchmark's
own hooks (``pytest_benchmark_generate_machine_info`` ... ``pytest_benchmark_update_json``), so
other plugins' hook implementations apply to documents written here as to pytest-benchmark's.
The one thing no hook or option gives is the configured storage (``--benchmark-storage`` loaded
with its machine id, netrc and logger): ``benchmark_storage`` is the only private access, and
tests/test_bench_api.py fails loudly when pytest-benchmark changes it. ``defer_json_open`` changes
how 5.2 parses ``--benchmark-json`` (pytest's ``getgroup``/``options``/``attrs()``, and on pytest 9
the argparse action), and tests/test_bench_api.py fails if that stops working.
"""

from __future__ import annotations

import argparse
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


def json_option_path(value: Any) -> str | None:
    """The path ``--benchmark-json`` names, whole: pytest-benchmark 5.3 keeps it as a ``pathlib.Path``
    (whose ``.name`` is only the last part), 5.2 as the handle ``argparse.FileType`` opened (whose
    ``.name`` is the path as given). None without the option."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else None


class DeferredJsonFile:
    """``--benchmark-json PATH`` under pytest-benchmark 5.2, opened for writing only when the document
    is written (``with it as fh``), as 5.3 does with its ``Path``. 5.2's ``argparse.FileType('wb')``
    emptied the file while the command line was parsed, before any check could refuse the path: a
    results log given as ``--benchmark-json`` was refused and already lost (issue 27 item 1)."""

    def __init__(self, path: str):
        self.name = path
        self._fh = None

    def __fspath__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name

    def __enter__(self):
        self._fh = open(self.name, "wb")
        return self._fh

    def __exit__(self, *exc) -> None:
        self._fh.close()
        self._fh = None

    def write(self, data: bytes) -> int:  # inside ``with``, as 5.2's handle was written
        return self._fh.write(data)


def _deferred_json(value: str):
    return argparse.FileType("wb")(value) if value == "-" else DeferredJsonFile(value)


def _defer(parser) -> None:
    """pytest 8 builds its argparse parser from the options' ``attrs()`` at each parse; pytest 9.1 wraps the
    argparse action (``type`` a read-only property, ``attrs()`` the action's ``__dict__``); pytest 9 adds
    each option to ``parser.optparser`` when it is declared, so there the argparse action's type is
    changed (argparse's ``_option_string_actions``; tests/test_bench_api.py fails if it stops working)."""
    for option in parser.getgroup("benchmark").options:
        attrs = option.attrs()  # pytest >= 9.1: the argparse action's own __dict__; before: a copy
        if "--benchmark-json" in option.names() and isinstance(attrs.get("type"), argparse.FileType):
            attrs["type"] = _deferred_json
            if not isinstance(getattr(type(option), "type", None), property):  # pytest < 9.1 keeps its own
                option.type = _deferred_json
    action = getattr(getattr(parser, "optparser", None), "_option_string_actions", {}).get("--benchmark-json")
    if action is not None and isinstance(action.type, argparse.FileType):
        action.type = _deferred_json


class _WhenBenchmarkRegisters:
    def __init__(self, parser):
        self.parser = parser

    def pytest_plugin_registered(self, plugin_name) -> None:
        if plugin_name == "benchmark":
            _defer(self.parser)


def defer_json_open(parser, pluginmanager) -> None:
    """Make 5.2's ``--benchmark-json`` a :class:`DeferredJsonFile` before the command line is parsed
    (5.3's is a ``Path`` already: nothing changes). Called from pytest_addoption; pytest-benchmark's
    options exist already, or do once its plugin registers (entry points load in no fixed order)."""
    if pluginmanager.hasplugin("benchmark"):
        _defer(parser)
    elif not pluginmanager.hasplugin("moeperf-benchmark-json"):
        pluginmanager.register(_WhenBenchmarkRegisters(parser), "moeperf-benchmark-json")


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


def incompatible_installed() -> str | None:
    """:func:`incompatible_versions` of the installed pytest and pytest-benchmark."""
    from importlib.metadata import version

    import pytest

    return incompatible_versions(pytest.__version__, version("pytest-benchmark"))
