"""A run's benchmarks as report rows: case ids, series, the paper baseline's conventions (loading)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pytest_moeperf.report.failed_cases import failed_rows
from pytest_moeperf.metrics.formats import DASH
from pytest_moeperf.report.row import Row, _DTYPE_ALIASES, _num
from pytest_moeperf.metrics.schema import METRICS
from pytest_moeperf.results.documents import CASE, SERVING, benchmark_kind, read_document  # noqa: F401  (read_document: runs.py)

def _case_id(bench: dict) -> str:
    # the parametrize id (pytest-benchmark's "param") is the case id of cases.py
    if isinstance(bench.get("param"), str) and bench["param"]:
        return bench["param"]
    params = bench.get("params")
    if isinstance(params, dict):
        for key in ("case", "case_id", "id"):
            if isinstance(params.get(key), str):
                return params[key]
        strings = [v for v in params.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    if isinstance(bench.get("param"), str) and bench["param"]:
        return bench["param"]
    for key in ("name", "fullname"):
        name = str(bench.get(key) or "")
        if name.endswith("]") and "[" in name:
            return name[name.index("[") + 1:-1]
    return str(bench.get("name") or bench.get("fullname") or "?")


def _int(x) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _row(bench: dict) -> Row:
    """Every axis from extra_info, where the measurement wrote it (ids are never parsed back)."""
    case_id = _case_id(bench)
    ei = bench.get("extra_info") if isinstance(bench.get("extra_info"), dict) else {}
    stats = bench.get("stats") if isinstance(bench.get("stats"), dict) else {}
    model = ei["model"] if isinstance(ei.get("model"), str) and ei["model"] else case_id
    axes: dict = {}
    dtype = ei.get("dtype")
    if isinstance(dtype, str) and dtype:
        axes["dtype"] = _DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    for key in ("backend", "decoding", "context_mode"):
        if isinstance(ei.get(key), str) and ei[key]:
            axes[key] = ei[key]
    if _int(ei.get("batch_size")) is not None:
        axes["batch_size"] = ei["batch_size"]
    if "experts" in ei and (ei["experts"] is None or isinstance(ei["experts"], str)):
        axes["experts"] = ei["experts"]
    # a variant the Case axes do not name (a tensor-parallel group): never a core row
    tp = _int(ei.get("tp_size"))
    extra = (f"tp{tp}",) if tp and tp > 1 else ()
    return Row(case_id, model, _int(ei.get("context_tokens")), _int(ei.get("new_tokens")), axes, extra, ei, stats)


@dataclass
class Results:
    path: str
    doc: dict
    rows: list[Row]
    by_id: dict[str, Row] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # shown on stderr by run()
    sources: list["Results"] = field(default_factory=list)  # the runs a merged Results came from (runs.py)

    def __post_init__(self):
        for r in self.rows:
            self.by_id.setdefault(r.case_id, r)
        _assign_series(self.rows)

    @property
    def machine(self) -> dict:
        mi = self.doc.get("machine_info")
        return mi if isinstance(mi, dict) else {}

    @property
    def commit(self) -> dict:
        ci = self.doc.get("commit_info")
        return ci if isinstance(ci, dict) else {}

    @property
    def is_paper(self) -> bool:
        return bool(self.rows) and all(r.is_paper for r in self.rows)


def _assign_series(rows: list[Row]) -> None:
    news: dict[str, set] = defaultdict(set)
    for r in rows:
        if r.core:
            news[r.model].add(r.new_tokens)
    for r in rows:
        r.series = r.model if len(news[r.model]) <= 1 else f"{r.model} (n={r.new_tokens})"


def is_harness(bench: dict) -> bool:
    """A benchmark of the harness itself (benchmarks/test_serving_harness.py: the load generator against
    a stub), not of a model: the report lists it apart."""
    ei = bench.get("extra_info")
    return isinstance(ei, dict) and "harness_point" in ei


def split_benches(doc: dict) -> tuple[list[dict], list[dict]]:
    """(serving load points, harness benchmarks) of a document; the rest are cases (:func:`results_of`)."""
    benches = [b for b in doc["benchmarks"] if isinstance(b, dict)]
    return ([b for b in benches if benchmark_kind(b) == SERVING],
            [b for b in benches if benchmark_kind(b) == CASE and is_harness(b)])


def load_results(path, allow_empty: bool = False) -> Results:
    """Read a pytest-benchmark JSON document; ValueError (one line, naming the file) if unusable."""
    return results_of(str(Path(path)), read_document(path), allow_empty)


def results_of(p: str, doc: dict, allow_empty: bool = False) -> Results:
    """The report rows of a document: its benchmarks, then its failed cases (``moeperf_failed``)."""
    benches = doc["benchmarks"]
    # serving load points (serving_view.py) and harness benchmarks have their own sections
    rows = [_row(b) for b in benches if isinstance(b, dict) and benchmark_kind(b) == CASE and not is_harness(b)]
    rows += failed_rows(doc)
    if not rows and not allow_empty:
        raise ValueError(f"{p}: no benchmarks")
    present = [(r, m.key) for r in rows for m in METRICS if r.ei.get(m.key) is not None]
    bad = [(r.case_id, key) for r, key in present if _num(r.ei.get(key)) is None]
    if any(not r.failed for r in rows) and len(bad) == len(present):
        raise ValueError(f"{p}: no benchmark has a numeric moeperf metric (ttft_ms, tpot_ms, ...); give the "
                         f"--benchmark-json of a benchmarks/ run, or python -m pytest_moeperf results LOG --json")
    results = Results(p, doc, rows)
    if bad:
        results.warnings.append(f"{p}: {len(bad)} metric value(s) are not numbers and show as {DASH} "
                                f"(e.g. {bad[0][1]} of {bad[0][0]})")
    return results
