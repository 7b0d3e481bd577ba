"""History: the stored runs of main as series per benchmark and metric, with change points.

A storage folder (``baselines/h200/``, the refresh job's ``--benchmark-save`` output) holds
one pytest-benchmark JSON per run. Per GPU, benchmark and metric the runs' values (the
run's scalar, e.g. its median ``tpot_ms``) form a series ordered by commit time
(``commit_info.time``), else by the run's own ``datetime`` (the notes say which). Change
points come from Apache Otava's E-Divisive with Hunter's split/merge and a two-sided
t-test (``otava.analysis.compute_change_points``): each one splits the series into
segments and carries the t-test's p-value, the means either side, and the direction from
the metric's definition in ``schema.py``.

Otava is imported lazily (only when a series is analysed): ``pip install --no-deps
apache-otava==0.8.0`` (see :data:`INSTALL_HINT`). Pure data otherwise; no matplotlib here
(``history_render.py`` draws).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_moeperf.metrics import schema
from pytest_moeperf.results.documents import SOURCE_KEY, DocumentError, bench_key, gpu_name, gpu_uuid, load_documents

# Otava declares numpy==2.2.0 and scipy<1.17 and pulls its BigQuery, Postgres and Slack
# clients for its own CLI; its change-point core (otava.analysis) needs numpy and scipy
# only, so it is installed without its declared dependencies (docs/history.md).
INSTALL_HINT = "pip install --no-deps apache-otava==0.8.0"

# Otava's own defaults (its CLI: --max-pvalue 0.001, --min-magnitude 0). The false-change
# and detection rates at these settings on H200-like noise are in docs/history.md.
DEFAULT_MAX_PVALUE = 0.001
DEFAULT_MIN_MAGNITUDE = 0.0
# Fewer runs than this: "insufficient data", no change point search. With 3 runs a side
# at the H200's 3.5-4 % run-to-run CV only a change of ~15 % or more reaches p < 0.001.
DEFAULT_MIN_RUNS = 6
# The metrics gated with per-round samples: what a history is about by default.
DEFAULT_METRICS: tuple[str, ...] = tuple(m.key for m in schema.METRICS if m.samples)

INSUFFICIENT = "insufficient data"
ANALYSED = "analysed"


class HistoryError(ValueError):
    """Bad input to the history (one line naming the fix)."""


@dataclass(frozen=True)
class Run:
    source: str
    when: datetime | None   # commit time, else the run's datetime
    ordered_by: str         # "commit time" | "run datetime" | "file name"
    commit: str | None
    gpu: str
    doc: Mapping[str, Any] = field(repr=False, compare=False)
    label: str = ""         # the file relative to the storage folder

    @property
    def name(self) -> str:
        return self.label or Path(self.source).name


@dataclass(frozen=True)
class ChangePoint:
    index: int              # position in the series of the first run after the change
    source: str
    commit: str | None
    when: str | None
    before: float           # mean of the segment before (Otava's t-test statistics)
    after: float
    change_abs: float
    change_pct: float
    direction: str          # "regression" | "improvement"
    p_value: float

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Series:
    gpu: str                # for display: the GPU's name, with its UUID's start where boards of one name differ
    benchmark: str
    metric: str
    unit: str
    direction: str          # the metric's better direction, from schema.py
    runs: tuple[Run, ...]
    values: tuple[float, ...]
    status: str             # ANALYSED | INSUFFICIENT
    change_points: tuple[ChangePoint, ...] = ()
    gpu_uuid: str | None = None  # the board (part of the series' key: two H200s are two series)

    def segments(self) -> list[tuple[int, int]]:
        """[start, stop) of each stable segment, oldest first."""
        cuts = [0, *(c.index for c in self.change_points), len(self.values)]
        return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]

    def to_json(self) -> dict:
        return {"gpu": self.gpu, "gpu_uuid": self.gpu_uuid, "benchmark": self.benchmark, "metric": self.metric, "unit": self.unit,
                "better": self.direction, "status": self.status,
                "runs": [{"source": r.source, "commit": r.commit,
                          "when": r.when.isoformat() if r.when else None, "value": v}
                         for r, v in zip(self.runs, self.values)],
                "segments": [{"start": a, "stop": b, "runs": b - a} for a, b in self.segments()]
                if self.status == ANALYSED else [],
                "change_points": [c.to_json() for c in self.change_points]}


@dataclass(frozen=True)
class History:
    series: tuple[Series, ...]
    notes: tuple[str, ...]      # ordering, GPUs kept apart, benchmark sets, skipped files
    runs: int

    def to_json(self) -> dict:
        return {"moeperf_history_version": 1, "runs": self.runs, "notes": list(self.notes),
                "series": [s.to_json() for s in self.series]}


# -- loading -------------------------------------------------------------------------------

def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def parse_since(text: str) -> datetime:
    t = _parse_time(text)
    if t is None:
        raise HistoryError(f"--since {text!r}: not a date; give an ISO date or time, e.g. 2026-11-29 or "
                           f"2026-11-29T18:00:00+00:00")
    return t


def run_of(doc: Mapping[str, Any], root: Path | None = None) -> Run:
    info = doc.get("commit_info") if isinstance(doc.get("commit_info"), Mapping) else {}
    commit_time = _parse_time(info.get("time"))
    run_time = _parse_time(doc.get("datetime"))
    when, by = (commit_time, "commit time") if commit_time else \
        (run_time, "run datetime") if run_time else (None, "file name")
    commit = str(info["id"]) if info.get("id") else None
    source = str(doc.get(SOURCE_KEY, "?"))
    try:
        label = str(Path(source).relative_to(root)) if root is not None and root.is_dir() else ""
    except ValueError:
        label = ""
    return Run(source, when, by, commit, gpu_name(doc) or "unknown GPU", doc, label)


def order_key(run: Run) -> tuple:
    # several runs of one commit (the 8 static runs of a refresh): by their own time, then file
    run_time = _parse_time(run.doc.get("datetime"))
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return (run.when or epoch, run_time or epoch, Path(run.source).name, run.source)


def load_runs(storage: str | Path, since: datetime | None = None) -> tuple[list[Run], list[str]]:
    """Every run under ``storage`` (a folder, looked into recursively, or one file), ordered.

    Unreadable or non-benchmark files are skipped with one note each. Raises HistoryError
    when nothing usable is there."""
    p = Path(storage)
    if not p.exists():
        raise HistoryError(f"{p}: no such file or folder; give a pytest-benchmark storage folder, e.g. baselines/h200")
    files = sorted(f for f in p.rglob("*.json") if f.is_file()) if p.is_dir() else [p]
    runs, notes = [], []
    for f in files:
        try:
            runs.extend(run_of(d, p) for d in load_documents(f))
        except DocumentError as exc:
            notes.append(f"skipped {exc}")
    if not runs:
        raise HistoryError(f"{p}: no pytest-benchmark runs found" + (f" ({len(notes)} files skipped)" if notes else "")
                           + "; save runs with --benchmark-storage file://FOLDER --benchmark-save NAME")
    if since is not None:
        kept = [r for r in runs if r.when is not None and r.when >= since]
        notes.append(f"--since {since.isoformat()}: {len(kept)} of {len(runs)} runs")
        runs = kept
    runs.sort(key=order_key)
    by = Counter(r.ordered_by for r in runs)
    if set(by) == {"commit time"}:
        notes.insert(0, "ordered by commit time (commit_info.time)")
    elif runs:
        missing = by["run datetime"] + by["file name"]
        notes.insert(0, f"{missing} of {len(runs)} runs have no commit info (commit_info.time): ordered by their "
                        f"run datetime" + (f", {by['file name']} without one by file name" if by["file name"] else "")
                        + (f"; the other {by['commit time']} by commit time" if by["commit time"] else ""))
    return runs, notes


def group_notes(runs: Sequence[Run]) -> list[str]:
    """What was kept apart: GPUs, and benchmark sets that differ between runs."""
    notes = []
    gpus = Counter(gpu_label(r.gpu, gpu_uuid(r.doc), _names_with_boards(runs)) for r in runs)
    if len(gpus) > 1:
        notes.append("runs of several GPUs, kept apart: " + ", ".join(f"{g} ({n} runs)" for g, n in gpus.items()))
    sets = Counter(frozenset(bench_key(b) for b in r.doc.get("benchmarks", [])) for r in runs)
    if len(sets) > 1:
        common = sets.most_common()
        desc = "; ".join(f"{len(s)} benchmarks in {n} runs" for s, n in common[:3]) + ("; ..." if len(common) > 3 else "")
        notes.append(f"{len(sets)} benchmark sets mixed in ({desc}): each benchmark's series holds the runs "
                     f"that measured it")
    return notes


# -- change points -------------------------------------------------------------------------

def require_otava():
    try:
        from otava import analysis
    except ImportError:
        raise HistoryError(f"change-point detection needs Apache Otava: {INSTALL_HINT}") from None
    return analysis


def _value(bench: Mapping[str, Any], key: str) -> float | None:
    v = (bench.get("extra_info") or {}).get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def find_change_points(values: Sequence[float], max_pvalue: float = DEFAULT_MAX_PVALUE,
                       min_magnitude: float = DEFAULT_MIN_MAGNITUDE) -> list[tuple[int, float, float, float]]:
    """(index, mean before, mean after, p-value) of each change point Otava finds, oldest first.

    A constant series has none (the t-test of two zero-variance segments has no p-value)."""
    if len(values) < 2 or max(values) == min(values):
        return []
    analysis = require_otava()
    # a list, not an ndarray: Otava's detector slices only non-array input to its windows
    cps, _weak = analysis.compute_change_points(list(map(float, values)), window_len=50,
                                                max_pvalue=max_pvalue, min_magnitude=min_magnitude)
    out = []
    for cp in sorted(cps, key=lambda c: c.index):
        p = float(cp.stats.pvalue)
        if not math.isfinite(p):
            continue
        out.append((int(cp.index), float(cp.stats.mean_1), float(cp.stats.mean_2), p))
    return out


def _change_point(metric: schema.Metric, runs: Sequence[Run], found: tuple[int, float, float, float]) -> ChangePoint:
    index, before, after, p = found
    delta = after - before
    pct = 100.0 * delta / before if before else float("nan")
    worse = delta > 0 if metric.direction == "lower" else delta < 0
    run = runs[index]
    return ChangePoint(index, run.name, run.commit, run.when.isoformat() if run.when else None, before, after,
                       delta, pct, "regression" if worse else "improvement", p)


def analyse_series(gpu: str, benchmark: str, metric: schema.Metric, runs: Sequence[Run], values: Sequence[float],
                   max_pvalue: float = DEFAULT_MAX_PVALUE, min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
                   min_runs: int = DEFAULT_MIN_RUNS) -> Series:
    if len(values) < min_runs:
        return Series(gpu, benchmark, metric.key, metric.unit, metric.direction, tuple(runs), tuple(values),
                      INSUFFICIENT)
    cps = tuple(_change_point(metric, runs, f) for f in find_change_points(values, max_pvalue, min_magnitude))
    return Series(gpu, benchmark, metric.key, metric.unit, metric.direction, tuple(runs), tuple(values),
                  ANALYSED, cps)


def resolve_metrics(names: Sequence[str]) -> list[schema.Metric]:
    if not names:
        return [schema.METRICS_BY_KEY[k] for k in DEFAULT_METRICS]
    if list(names) == ["all"]:
        return list(schema.METRICS)
    out = []
    for name in names:
        for key in (k.strip() for k in name.split(",") if k.strip()):
            if key not in schema.METRICS_BY_KEY:
                raise HistoryError(f"--metric {key}: unknown metric; choose from {', '.join(schema.METRICS_BY_KEY)} "
                                   f"or all")
            out.append(schema.METRICS_BY_KEY[key])
    return out


def bench_gpu_uuid(run: Run, bench: Mapping[str, Any]) -> str | None:
    """The board a benchmark ran on: its own extra_info.gpu_uuid (a run may merge cases from several
    machines), else its document's machine_info.gpu.uuid; None where neither was recorded."""
    extra = bench.get("extra_info") if isinstance(bench.get("extra_info"), Mapping) else {}
    return extra.get("gpu_uuid") or gpu_uuid(run.doc)


def _names_with_boards(runs: Sequence[Run]) -> set[str]:
    """GPU names under which more than one board (UUID) appears."""
    boards: dict[str, set] = defaultdict(set)
    for r in runs:
        for bench in r.doc.get("benchmarks", []):
            boards[r.gpu].add(bench_gpu_uuid(r, bench))
    return {name for name, ids in boards.items() if len(ids) > 1}


def gpu_label(name: str, uuid: str | None, several: set[str]) -> str:
    """The name alone, or with the UUID's start where boards of that name differ ("NVIDIA H200 GPU-646aa32c")."""
    return f"{name} {str(uuid)[:12]}" if name in several else name


def build_history(runs: Sequence[Run], metrics: Sequence[schema.Metric], notes: Sequence[str] = (),
                  max_pvalue: float = DEFAULT_MAX_PVALUE, min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
                  min_runs: int = DEFAULT_MIN_RUNS) -> History:
    """Series per (GPU board, benchmark, metric) over ``runs`` (already ordered), analysed. The board is
    the GPU's UUID where recorded: two boards of one kind differ by more than a change of code can
    (on the H200, a 5.8 % energy step between two H200s), so their runs are two series."""
    points: dict[tuple[str, str | None, str, str], list[tuple[Run, float]]] = defaultdict(list)
    for run in runs:
        for bench in run.doc.get("benchmarks", []):
            uuid = bench_gpu_uuid(run, bench)
            for metric in metrics:
                v = _value(bench, metric.key)
                if v is not None:
                    points[(run.gpu, uuid, bench_key(bench), metric.key)].append((run, v))
    several = _names_with_boards(runs)
    series = []
    for (gpu, uuid, bench, key), pts in points.items():
        s = analyse_series(gpu_label(gpu, uuid, several), bench, schema.METRICS_BY_KEY[key], [r for r, _ in pts],
                           [v for _, v in pts], max_pvalue, min_magnitude, min_runs)
        series.append(replace(s, gpu_uuid=uuid))
    all_notes = [*notes, *group_notes(runs)]
    short = sum(1 for s in series if s.status == INSUFFICIENT)
    if short:
        all_notes.append(f"{short} of {len(series)} series have fewer than {min_runs} runs: {INSUFFICIENT}, "
                         f"no change points searched")
    if not series:
        all_notes.append("no run holds a value of the chosen metrics")
    return History(tuple(series), tuple(all_notes), len(runs))
