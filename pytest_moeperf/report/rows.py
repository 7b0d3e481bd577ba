"""A run's benchmarks as report rows: case ids, series, the paper baseline's conventions (loading)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pytest_moeperf.model.cases import DEFAULTS
from pytest_moeperf.report.report_format import DASH
from pytest_moeperf.metrics.schema import METRICS

ABLATION_TABLES = ("9", "10", "11", "12")


# --------------------------------------------------------------------------------------------
# loading

_DTYPE_ALIASES = {"bfloat16": "bf16", "torch.bfloat16": "bf16", "float16": "fp16", "half": "fp16",
                  "torch.float16": "fp16", "float32": "fp32", "float": "fp32", "torch.float32": "fp32"}


def _num(x) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Row:
    case_id: str
    model: str
    context: int | None
    new_tokens: int | None
    axes: dict
    extra_tokens: tuple  # variants beyond the Case axes (tensor parallel: ("tp2",))
    ei: dict
    stats: dict
    series: str = ""

    def v(self, key: str) -> float | None:
        return _num(self.ei.get(key))

    @property
    def failed(self) -> bool:
        return bool(self.ei.get("failed"))

    @property
    def error(self) -> str:
        err = self.ei.get("error")
        return str(err).splitlines()[0] if err else "failed"

    @property
    def paper_table(self) -> str | None:
        t = self.ei.get("paper_table")
        return str(t) if t is not None else None

    @property
    def is_paper(self) -> bool:
        return self.ei.get("source") == "paper"

    @property
    def variant_axes(self) -> frozenset:
        return frozenset(k for k, default in DEFAULTS.items() if self.axes.get(k, default) != default)

    @property
    def core(self) -> bool:
        # default axes, no unknown id suffix, and not a row of one of the paper's ablation tables
        # (a paper baseline files Table 10's 4096-token row under its plain id)
        return not self.variant_axes and not self.extra_tokens and self.paper_table not in ABLATION_TABLES

    @property
    def active_b(self) -> float | None:
        a = self.v("params_active")
        return a / 1e9 if a else None

    @property
    def moe(self) -> bool:
        arch = str(self.ei.get("architecture") or "").lower()
        if arch:
            return "moe" in arch
        total, active = self.v("params_total"), self.v("params_active")
        return bool(total and active and active < total)


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


def _serving_benches(path) -> list[dict]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # load_results names the problem
    from pytest_moeperf.serving.report import is_serving

    benches = doc.get("benchmarks") if isinstance(doc, dict) else None
    if not isinstance(benches, list):
        return []  # load_results names the problem ({"benchmarks": true} was a TypeError)
    return [b for b in benches if isinstance(b, dict) and is_serving(b)]


def read_document(path) -> dict:
    """A pytest-benchmark JSON document's top level; ValueError (one line, naming the file) if unusable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{p}: is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text (UTF-8) file") from None
    except OSError as exc:
        raise ValueError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        from pytest_moeperf.results.results_log import looks_like_results_log

        if looks_like_results_log(text):
            raise ValueError(f"{p}: a results log (JSON lines), not a run; rebuild the run with python -m "
                             f"pytest_moeperf results {p} --json run.json and give run.json") from None
        raise ValueError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: not a pytest-benchmark document (top level is not an object)")
    if not isinstance(doc.get("benchmarks"), list):
        raise ValueError(f"{p}: no 'benchmarks' list (is this a pytest-benchmark --benchmark-json file?)")
    return doc


def load_results(path, allow_empty: bool = False) -> Results:
    """Read a pytest-benchmark JSON document; ValueError (one line, naming the file) if unusable."""
    return results_of(str(Path(path)), read_document(path), allow_empty)


def results_of(p: str, doc: dict, allow_empty: bool = False) -> Results:
    """The report rows of a document: its benchmarks, then its failed cases (``moeperf_failed``)."""
    from pytest_moeperf.report.failed_cases import failed_rows

    benches = doc["benchmarks"]
    # serving load points (extra_info["load_point"]) have their own section (serving/report.py)
    rows = [_row(b) for b in benches if isinstance(b, dict) and "load_point" not in (b.get("extra_info") or {})]
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
