"""The gate's baseline as the last stable segment of main's history.

``compare BASE --baseline-segment last-stable`` and ``--moeperf-baseline-segment
last-stable`` pool, per benchmark, the stored runs since its newest change point in any
of the sampled metrics (history.DEFAULT_METRICS): the runs of the code as it is now, so
their spread is the measured run-to-run drift, and runs from before a change (which
would inflate the drift or shift the level) stay out. A benchmark whose series is too
short to judge is INCONCLUSIVE, "insufficient data", never PASS (a FAIL stays a FAIL: it
was measured against every run there is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_moeperf.results import documents
from pytest_moeperf.gate import verdicts as gate_verdicts
from pytest_moeperf.metrics import schema
from pytest_moeperf.history import history as h
from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, BenchmarkResult
from pytest_moeperf.history.history_render import short_name

SEGMENTS = ("all", "last-stable")


@dataclass(frozen=True)
class SegmentChoice:
    docs: tuple[dict, ...]                  # the documents, each holding only its benchmarks in their segment
    notes: tuple[str, ...]                  # one line per benchmark: which runs, since which change point
    insufficient: Mapping[str, str]         # benchmark -> why it cannot be judged

    def to_json(self) -> dict:
        return {"mode": "last-stable", "notes": list(self.notes), "insufficient_data": dict(self.insufficient)}


def check_segment(value: str, where: str) -> str:
    if value not in SEGMENTS:
        raise ValueError(f"{where} {value!r}: choose one of {', '.join(SEGMENTS)}")
    return value


def last_stable(base_docs: Sequence[Mapping[str, Any]], max_pvalue: float = h.DEFAULT_MAX_PVALUE,
                min_runs: int = h.DEFAULT_MIN_RUNS) -> SegmentChoice:
    """Per benchmark, the runs since its newest change point (runs ordered as history orders them)."""
    h.require_otava()  # the install hint up front, also when every series is too short to need it
    runs = sorted((h.run_of(d) for d in base_docs), key=h.order_key)
    metrics = [schema.METRICS_BY_KEY[k] for k in h.DEFAULT_METRICS]
    hist = h.build_history(runs, metrics, max_pvalue=max_pvalue, min_runs=min_runs)
    by_bench: dict[str, list[h.Series]] = {}
    for s in hist.series:
        by_bench.setdefault(s.benchmark, []).append(s)
    keep: dict[str, set[str]] = {}  # benchmark -> sources of the runs in its segment
    notes, insufficient = [], {}
    for bench, series in by_bench.items():
        boards = {s.gpu_uuid for s in series}
        if len(boards) > 1:
            # runs of several boards are several series: the baseline is the board measured last
            # (a change of board is a change of level, as a change point is)
            newest = max(series, key=lambda s: h.order_key(s.runs[-1])).gpu_uuid
            left = sum(len(s.values) for s in series if s.gpu_uuid != newest and s.metric == series[0].metric)
            series = [s for s in series if s.gpu_uuid == newest]
            notes.append(f"{short_name(bench)}: the runs of GPU {newest} only, the board measured last "
                         f"({left} run(s) of other boards left out)")
        longest = max(series, key=lambda s: len(s.values))
        n = len(longest.values)
        if any(s.status == h.INSUFFICIENT for s in series):
            why = f"{h.INSUFFICIENT}: {n} stored runs, the last stable segment needs {min_runs} or more"
            insufficient[bench] = why
            keep[bench] = {r.source for r in longest.runs}
            notes.append(f"{short_name(bench)}: {why}; compared with all {n}")
            continue
        cps = [(c, s) for s in series for c in s.change_points]
        if not cps:
            keep[bench] = {r.source for r in longest.runs}
            notes.append(f"{short_name(bench)}: runs 1-{n} of {n} (no change point)")
            continue
        # the newest change of any metric starts the segment; a change point's index is
        # counted in its own series, so compare by run, not by position
        cp, s = max(cps, key=lambda cs: h.order_key(cs[1].runs[cs[0].index]))
        start_run = s.runs[cp.index]
        segment = [r for r in longest.runs if h.order_key(r) >= h.order_key(start_run)]
        keep[bench] = {r.source for r in segment}
        label = f"{start_run.commit[:10]} ({start_run.source})" if start_run.commit else start_run.source
        why = f"{s.metric} {cp.change_pct:+.1f}% {cp.direction}, p={cp.p_value:.2g}"
        notes.append(f"{short_name(bench)}: runs {n - len(segment) + 1}-{n} of {n}, since the change point at {label} ({why})")
        if len(segment) < 2:
            insufficient[bench] = (f"{h.INSUFFICIENT}: the last stable segment holds {len(segment)} run, "
                                   f"its drift cannot be measured")
    docs = []
    for run in runs:
        benches = [b for b in run.doc.get("benchmarks", []) if run.source in keep.get(documents.bench_key(b), ())]
        if benches:
            docs.append({**run.doc, "benchmarks": benches})
    return SegmentChoice(tuple(docs), tuple(notes), insufficient)


def judge(result: BenchmarkResult, choice: SegmentChoice | None) -> BenchmarkResult:
    """A benchmark whose baseline series is too short: INCONCLUSIVE with the reason (FAIL stays)."""
    why = choice.insufficient.get(result.fullname) if choice else None
    if not why or result.verdict == FAIL or result.status != "compared":  # new or not compared: nothing to judge
        return result
    metrics = tuple(replace(m, verdict=INCONCLUSIVE, reason=f"{why}; {m.reason}") if m.verdict in (gate_verdicts.PASS, gate_verdicts.WARN)
                    and m.metric in h.DEFAULT_METRICS else m for m in result.metrics)
    return replace(result, verdict=INCONCLUSIVE, metrics=metrics)


def apply(result: gate_verdicts.GateResult, choice: SegmentChoice | None) -> gate_verdicts.GateResult:
    if choice is None:
        return result
    return replace(result, benchmarks=tuple(judge(b, choice) for b in result.benchmarks))
