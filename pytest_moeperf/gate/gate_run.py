"""The one path every gate verdict takes: a baseline, the head's machine, then one call per benchmark.

``python -m pytest_moeperf compare`` (gate_cli), the gate inside pytest (gate_pytest) and the
merged cases of an xdist run (multigpu) all judge through ``GateRun``, so a benchmark gets the
same verdict whichever way it was run: matched to every stored run of it (history: pooled
rounds and the measured run-to-run drift), with the cross-machine prior when the GPU differs.
Before this, the xdist path compared against the newest run alone and without the prior.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_moeperf.gate import baseline as gate_baseline
from pytest_moeperf.results import documents
from pytest_moeperf.gate import decision as gate_decision
from pytest_moeperf.gate.verdicts import BenchmarkResult, GateResult
from pytest_moeperf.gate.config import GateConfig


class GateRun:
    """Judge head benchmarks against ``base_docs`` (oldest first; the newest run is the baseline)."""

    def __init__(self, base_docs: Sequence[Mapping[str, Any]], config: GateConfig, segment: Any = None) -> None:
        """``segment``: history_gate's SegmentChoice when the baseline is the last stable segment
        (``base_docs`` are then its documents): a benchmark it could not judge is INCONCLUSIVE."""
        self.base_docs = list(base_docs)
        self.config = config
        self.segment = segment
        self.index = gate_baseline.index_baseline(self.base_docs)
        self.history = gate_baseline.HistoryIndex(self.base_docs)
        self.results: list[BenchmarkResult] = []
        self.head_docs: list[Mapping[str, Any]] = []
        self._cross = False

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], config: GateConfig, all_runs: bool = False) -> GateRun:
        """A pytest-benchmark JSON file or storage folder (newest run; every run with ``all_runs``)."""
        return cls(documents.load_documents(path, all_runs=all_runs), config)

    def set_head(self, head_doc: Mapping[str, Any] | None) -> None:
        """The head run's document (its ``machine_info`` is what counts); raises GpuMismatchError
        when it names another GPU than the baseline. Call once per head run before ``judge``."""
        if head_doc is None:
            return
        gate_baseline.check_gpu(self.base_docs, head_doc, self.config)
        self.head_docs.append(head_doc)
        self._cross = self._cross or gate_baseline.is_cross_machine(self.base_docs, head_doc)

    def judge(self, bench: Mapping[str, Any], head_runs: Sequence[Mapping[str, Any]] = ()) -> BenchmarkResult:
        """One head benchmark; ``head_runs``: the same benchmark from several head runs of the same
        code (oldest first, ``bench`` among them), pooled like the baseline's runs."""
        base, source = gate_baseline.find_baseline(self.index, bench)
        machine = (self.head_docs[-1].get("machine_info") if self.head_docs else None) or {}
        why = None if base is None or self.config.ignore_gpu else gate_baseline.device_mismatch(
            self.base_docs, {"machine_info": machine, "benchmarks": [bench]})
        if why:  # the run named no device up front (e.g. --gpu auto): its case does
            result = gate_decision.not_comparable(bench, why, source)
            self.results.append(result)
            return result
        head_bench = gate_baseline.pool_runs(head_runs) if len(head_runs) > 1 else bench
        result = gate_decision.compare_benchmark(
            base, head_bench, self.config, source, self.history.history(bench),
            gate_baseline.bench_cross_machine(base, bench, self._cross),
            [r.get("extra_info") or {} for r in head_runs] if len(head_runs) > 1 else ())
        if self.segment is not None:
            from pytest_moeperf.gate.history_gate import judge

            result = judge(result, self.segment)
        self.results.append(result)
        return result

    def result(self) -> GateResult:
        return gate_decision.build_result(self.results, self.base_docs, self.config,
                                 self.head_docs[-1] if self.head_docs else None)

    def compare(self, head: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> GateResult:
        """Every benchmark of one head document, or of several runs of the same code (pooled)."""
        head_docs = [head] if isinstance(head, Mapping) else list(head)
        for doc in head_docs:
            self.set_head(doc)
        for bench in head_docs[-1].get("benchmarks", []):
            runs = gate_baseline.baseline_history(head_docs, bench) if len(head_docs) > 1 else [bench]
            self.judge(bench, runs)
        return self.result()


def compare_documents(base_docs: Sequence[Mapping[str, Any]],
                      head: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                      config: GateConfig) -> GateResult:
    """Every benchmark of the run against the baseline documents, matched by fullname (then name).

    ``head`` is one run's document, or several runs of the same code (oldest first): their
    rounds are pooled and the spread of their medians joins the baseline runs' in the
    run-to-run drift, which shrinks as sqrt(1/m + 1/k) with m runs here and k stored.
    """
    return GateRun(base_docs, config).compare(head)
