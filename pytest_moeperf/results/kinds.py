"""One kind of benchmark in the plugin session: single-request cases (plugin/plugin.py) and serving load
points (serving/plugin.py) report through the same lifecycle here.

A kind knows its parametrized fixture (``moeperf_case``, ``moeperf_serving_point``) and how to find the
object an item measures (a Case, a ServingPoint: both have ``case_id``). For each item it keeps whether
its measurement began and finished in this process (a benchmark cut short is dropped from
pytest-benchmark's documents, as from the results log), and when the item reports: a finished
benchmark is logged and announced (``pytest_moeperf_case_finished``), a failed one is logged with its
one line and announced (``pytest_moeperf_case_failed``), without pytest-benchmark's "fixture was not
used" warning. Imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable

from .outputs import drop_unfinished, failure_line, quiet_unused_fixture


class BenchmarkKind:
    """``param``: the fixture the kind parametrizes; ``lookup(id)``: the object of an id;
    ``log_finished(bench)`` and ``log_failed(nodeid, case_id, error)`` write the results log."""

    def __init__(self, config, param: str, lookup: Callable[[str], Any],
                 log_finished: Callable[[dict], None], log_failed: Callable[[str, str, str], None]):
        self.config = config
        self.param = param
        self.lookup = lookup
        self.log_finished = log_finished
        self.log_failed = log_failed
        self.finished: list[tuple] = []  # (object, extra_info)
        self.failed: list[tuple] = []  # (object, error)
        self.started: set[str] = set()  # nodeids whose measurement began in this process
        self.finished_nodeids: set[str] = set()

    def id_of(self, item) -> str | None:
        spec = getattr(item, "callspec", None)
        return spec.params.get(self.param) if spec is not None else None

    def call_started(self, item) -> None:
        if self.id_of(item) is not None:
            self.started.add(item.nodeid)

    def reported(self, item, call, report) -> tuple[Any, str | None] | None:
        """Log the call phase's report of one of this kind's items; returns (object, error or None),
        or None for other items and phases."""
        pid = self.id_of(item)
        if call.when != "call" or pid is None:
            return None
        obj = self.lookup(pid)
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        if report.passed and fixture is not None and getattr(fixture, "stats", None) is not None:
            bench = fixture.stats.as_dict(include_data=True)
            self.finished_nodeids.add(item.nodeid)  # measured: kept in --benchmark-json even if the log fails
            self.log_finished(bench)
            self.finished.append((obj, bench["extra_info"]))
            self.config.hook.pytest_moeperf_case_finished(config=self.config, case=obj, extra_info=bench["extra_info"])
            return obj, None
        if report.failed:
            quiet_unused_fixture(fixture)
            error = failure_line(report)
            self.log_failed(item.nodeid, obj.case_id, error)
            self.failed.append((obj, error))
            self.config.hook.pytest_moeperf_case_failed(config=self.config, case=obj, error=error)
            return obj, error
        return None

    def drop_unfinished(self, output_json: dict) -> None:
        """A benchmark cut short (Ctrl-C mid-rounds) has stats but never finished: left out of the
        --benchmark-json and --benchmark-save documents, as from the results log."""
        output_json["benchmarks"] = drop_unfinished(output_json.get("benchmarks") or [], self.started,
                                                    self.finished_nodeids)
