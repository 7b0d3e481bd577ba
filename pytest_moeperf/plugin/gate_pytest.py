"""The gate inside pytest: each benchmark test is compared with its baseline as it finishes.

plugin.py registers ``GatePlugin(config)`` in pytest_configure and defines the options;
they are read with ``config.getoption(dest, default)`` so the plugin also works where
only some of them exist. A FAIL turns the benchmark's test into a failure whose message
is the metric table; the session summary and the verdict JSON cover every benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_moeperf.results.outputs import DEFAULT_VERDICT_JSON

if TYPE_CHECKING:  # the gate (numpy, the stored runs) loads only once there is something to gate
    from pytest_moeperf.gate import history_gate
    from pytest_moeperf.gate.config import GateConfig
    from pytest_moeperf.gate.gate_run import GateRun
    from pytest_moeperf.gate.verdicts import GateResult

# the fixtures of the suite's own benchmarks: a session that collects one of them is gated
MOEPERF_FIXTURES = ("moeperf_case", "moeperf_serving_point")
MARKER = "moeperf"  # a benchmark of one's own with moeperf metrics in extra_info opts in with it


def is_moeperf_item(item: pytest.Item) -> bool:
    return (any(name in getattr(item, "fixturenames", ()) for name in MOEPERF_FIXTURES)
            or item.get_closest_marker(MARKER) is not None)


class GatePlugin:
    """``eager``: a moeperf option was given, so the gate starts (and checks its baseline) at session
    start; otherwise it starts once collection finds a moeperf benchmark, and a session without one
    (another project's tests, the plugin installed alongside) never imports the gate or reads storage."""

    def __init__(self, config: pytest.Config, eager: bool = True) -> None:
        self.config = config
        self.eager = eager
        self.started = False
        self.mode = str(config.getoption("moeperf_gate", "auto") or "auto")
        self.gate_config: GateConfig | None = None
        self.base_docs: list[dict] = []
        self.run: GateRun | None = None  # None: gate off
        self.status = ""  # why there is nothing to compare with, shown in the summary
        self.storage_folder: Path | None = None  # auto: the baseline is what the benchmark storage holds
        self.result: GateResult | None = None
        self.verdict_path: Path | None = None
        self.segment: history_gate.SegmentChoice | None = None  # --moeperf-baseline-segment last-stable

    # -- setup: after every pytest_configure, so pytest-benchmark's session exists ------------

    def _opt(self, name: str, default: Any = None) -> Any:
        value = self.config.getoption(name, default)
        return default if value is None else value

    def _compared_docs(self) -> list[dict]:
        """The run(s) --benchmark-compare chose, as pytest-benchmark's storage loads them."""
        from pytest_moeperf.results import bench_api
        from pytest_moeperf.results import documents

        compare = self.config.getoption("benchmark_compare", None)
        storage = bench_api.benchmark_storage(self.config) if compare else None
        if storage is None:
            return []
        loaded = list(storage.load()) if compare is True else list(storage.load(compare))
        if compare is True:
            loaded = loaded[-1:]
        docs = []
        for relpath, data in loaded:
            where = str(Path(str(storage)) / str(relpath))
            documents.validate_document(data, where)
            docs.append({**data, documents.SOURCE_KEY: where})
        return docs

    def _resolve_baseline(self) -> list[dict]:
        from pytest_moeperf.gate import history_gate

        segment = history_gate.check_segment(str(self._opt("moeperf_baseline_segment", "all")),
                                             "--moeperf-baseline-segment")
        docs = self._baseline_docs(all_runs=segment == "last-stable")
        if segment == "last-stable" and docs:
            self.segment = history_gate.last_stable(docs)
            return list(self.segment.docs)
        return docs

    def _baseline_docs(self, all_runs: bool) -> list[dict]:
        from pytest_moeperf.results import documents

        if self.mode not in ("auto", "off"):
            return documents.load_documents(self.mode, all_runs=all_runs)
        docs = self._compared_docs()
        if docs:
            return docs
        folder = documents.storage_path(self._opt("benchmark_storage", None))
        if folder is not None and documents.has_runs(folder):
            # every stored run: the newest is the baseline, the others give the run-to-run drift
            self.storage_folder = folder
            return documents.load_documents(folder, all_runs=True)
        self.status = f"no baseline yet (nothing stored in {folder or 'the benchmark storage'}): every benchmark PASSes"
        return []

    def _head_doc(self) -> dict | None:
        """This run's machine, when the baseline names a GPU to check it against (under xdist the
        controller also hands the merged workers' document to ``GateRun.set_head``)."""
        from pytest_moeperf.results import bench_api
        from pytest_moeperf.results import documents

        if not any(documents.gpu_name(d) for d in self.base_docs):
            return None
        if not hasattr(self.config.hook, "pytest_benchmark_generate_machine_info"):
            return None
        return {"machine_info": bench_api.machine_info(self.config)}

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # under xdist the controller collects nothing itself: it judges the workers' merged cases
        if self.eager or self.config.pluginmanager.hasplugin("dsession"):
            self._start()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.started and any(is_moeperf_item(item) for item in session.items):
            self._start()

    def _start(self) -> None:
        self.started = True
        if self.mode == "off" or hasattr(self.config, "workerinput"):  # xdist workers: benchmarks are off
            return
        from pytest_moeperf.gate import config as gate_config
        from pytest_moeperf.gate.config import BaselineError
        from pytest_moeperf.gate.gate_run import GateRun

        try:
            self.gate_config = gate_config.parse_options(self._opt, self.config.rootpath)
            self.base_docs = self._resolve_baseline()
            run = GateRun(self.base_docs, self.gate_config, self.segment)
            run.set_head(self._head_doc())
        except (BaselineError, gate_config.GpuMismatchError) as exc:
            raise pytest.UsageError(f"moeperf gate: {exc}") from None
        except ValueError as exc:  # a bad threshold/allow value or pyproject entry
            raise pytest.UsageError(f"moeperf gate: {exc}") from None
        self.run = run
        path = Path(self._opt("moeperf_verdict_json", DEFAULT_VERDICT_JSON))
        self.verdict_path = path if path.is_absolute() else self.config.invocation_params.dir / path

    # -- per test ----------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        report = yield
        if call.when != "call" or self.run is None or report.outcome != "passed":
            return report
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        stats = getattr(fixture, "stats", None)
        if not stats:  # benchmark not used, disabled, or no rounds
            return report
        from pytest_moeperf.gate.gate_render import render_benchmark_failure
        from pytest_moeperf.gate.verdicts import FAIL

        result = self.run.judge(stats.as_dict(include_data=True))
        if result.verdict == FAIL:
            report.outcome = "failed"
            report.longrepr = render_benchmark_failure(result)
        return report

    # -- end of session ----------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.run is None:
            return
        if not self.run.results and self._opt("moeperf_verdict_json", DEFAULT_VERDICT_JSON) == DEFAULT_VERDICT_JSON:
            return  # no benchmark ran (e.g. the unit tests): nothing to report, no file to leave behind
        from pytest_moeperf.gate.verdicts import INCONCLUSIVE

        self.result = self._no_stored_baseline(self.run.result())
        doc = self.result.to_json()
        doc["status"] = self.status or "compared"
        if self.segment is not None:
            doc["baseline_segment"] = self.segment.to_json()
        from pytest_moeperf.results.outputs import write_atomic

        try:
            write_atomic(self.verdict_path, json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            self.status += f"{'; ' if self.status else ''}{exc}"
            self.verdict_path = None
        # A FAIL already failed its test; a strict INCONCLUSIVE has no failed test to carry it,
        # and neither has a run of which nothing could be compared with an existing baseline.
        if session.exitstatus == 0 and (self.result.nothing_compared or (
                self.gate_config.strict and any(b.verdict == INCONCLUSIVE for b in self.result.benchmarks))):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _no_stored_baseline(self, result: GateResult) -> GateResult:
        """auto: the storage holds runs, but none of them any benchmark of this session (another
        subset, the serving sweep after a saved deployment run, a resume of cases never saved):
        there is no baseline for these benchmarks, which is not a failure (every one is new)."""
        if self.storage_folder is None or not result.nothing_compared or self.segment is not None:
            return result
        if not result.benchmarks or any(b.status != "new" for b in result.benchmarks):
            return result  # stored, but not comparable (another device ...): NO-OVERLAP stands
        from dataclasses import replace

        self.status = (f"no baseline for these benchmarks: the {len(result.baseline_sources)} stored run(s) in "
                       f"{self.storage_folder} hold other benchmarks; every benchmark PASSes as new")
        return replace(result, has_baseline=False, missing=())

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.result is None:
            return
        from pytest_moeperf.gate.gate_render import render_text
        from pytest_moeperf.gate.verdicts import INCONCLUSIVE, NO_OVERLAP

        tr = terminalreporter
        tr.write_sep("-", "moeperf gate")
        if self.status:
            tr.write_line(self.status)
        for note in self.segment.notes if self.segment is not None else ():
            tr.write_line(f"baseline segment: {note}")
        tr.write_line(render_text(self.result, verbose=tr.config.getoption("verbose", 0) > 0))
        if self.gate_config.strict and any(b.verdict == INCONCLUSIVE for b in self.result.benchmarks):
            tr.write_line("strict: INCONCLUSIVE benchmarks fail the session", red=True)
        if self.result.verdict == NO_OVERLAP:
            tr.write_line("NO-OVERLAP: nothing was compared with the baseline; this fails the session", red=True)
        if self.verdict_path is not None:
            tr.write_line(f"verdict JSON: {self.verdict_path}")
