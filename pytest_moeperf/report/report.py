"""``python -m pytest_moeperf report RESULTS.json [--against BASELINE.json] -o DIR``.

Writes ``DIR/report.md`` (the paper's Tables 1-8, Tables 9-12 where the ablation cases
exist, run metadata, metric definitions) and PNG plots, computed from the
pytest-benchmark JSON alone. With ``--against`` every table gains baseline and change-%
columns (matched by case id) and the plots show the baseline dashed / hatched.

Like is compared with like: a metric is compared only where the baseline has it under
the same definition. A baseline transcribed from the paper (``extra_info.source ==
"paper"``) has no decode throughput: its "TPOT (tok/s)" is ``e2e_tokens_per_s``
(prefill included), and its ``ape_tpot`` / ``tokens_per_s_per_gb`` are built on that
e2e figure, so they are compared with the run's e2e-based APE, not with its decode APE.

matplotlib is imported only inside :func:`run` (Agg backend).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pytest_moeperf.metrics import derived
from pytest_moeperf.model.cases import DEFAULTS
from pytest_moeperf.report.report_format import DASH, MAX_COLUMNS, change, fmt, pct, sig, split_table, table, without_unit
from pytest_moeperf.metrics.schema import METRICS, METRICS_BY_KEY

GB = 1e9
GiB = 2.0**30

ABLATION_TABLES = ("9", "10", "11", "12")

def _plot_files() -> tuple[str, ...]:
    from pytest_moeperf.report.report_plots import PLOTS

    return tuple(spec.file for spec in PLOTS)


PLOT_FILES = _plot_files()


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser) -> None:
    parser.add_argument("results", metavar="RESULTS.json", help="pytest-benchmark JSON of a run (--benchmark-json)")
    parser.add_argument("--against", metavar="BASELINE.json",
                        help="a baseline to compare with (e.g. baselines/h100/paper-h100.json)")
    parser.add_argument("-o", "--output", metavar="DIR", default="report",
                        help="directory for report.md and the PNG plots (default: report)")


def run(args) -> int:
    from pytest_moeperf.serving import report as serving_report

    serving = _serving_benches(args.results)
    results = load_results(args.results, allow_empty=bool(serving))
    baseline = load_results(args.against) if getattr(args, "against", None) else None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    import sys

    for doc in (results, baseline):
        for note in (doc.warnings if doc is not None else ()):
            print(f"warning: {note}", file=sys.stderr)
    markdown, written = "", []
    if results.rows:
        report = Report(results, baseline)
        written = report.write_plots(out)
        markdown = report.markdown()
    if serving:  # load points of benchmarks/test_serving.py: their own section and plots
        written += serving_report.write_plots(serving, out)
        markdown = (markdown + "\n" if markdown else "# pytest-moeperf report\n\n") + serving_report.markdown(serving)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    from pytest_moeperf.report.report_html import write_html

    page = write_html(markdown, out)
    print(f"wrote {out / 'report.md'}, {page} (self-contained) and {len(written)} plots")
    return 0


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
    return [b for b in benches or [] if isinstance(b, dict) and is_serving(b)]


def load_results(path, allow_empty: bool = False) -> Results:
    """Read a pytest-benchmark JSON document; ValueError (one line, naming the file) if unusable."""
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
    benches = doc.get("benchmarks")
    if not isinstance(benches, list):
        raise ValueError(f"{p}: no 'benchmarks' list (is this a pytest-benchmark --benchmark-json file?)")
    # serving load points (extra_info["load_point"]) have their own section (serving/report.py)
    rows = [_row(b) for b in benches if isinstance(b, dict) and "load_point" not in (b.get("extra_info") or {})]
    if not rows and not allow_empty:
        raise ValueError(f"{p}: no benchmarks")
    present = [(r, m.key) for r in rows for m in METRICS if r.ei.get(m.key) is not None]
    bad = [(r.case_id, key) for r, key in present if _num(r.ei.get(key)) is None]
    if rows and len(bad) == len(present):
        raise ValueError(f"{p}: no benchmark has a numeric moeperf metric (ttft_ms, tpot_ms, ...); give the "
                         f"--benchmark-json of a benchmarks/ run, or python -m pytest_moeperf results LOG --json")
    results = Results(str(p), doc, rows)
    if bad:
        results.warnings.append(f"{p}: {len(bad)} metric value(s) are not numbers and show as {DASH} "
                                f"(e.g. {bad[0][1]} of {bad[0][0]})")
    return results


# --------------------------------------------------------------------------------------------
# formatting


# (in report_format.py; the short names are kept for the code below)
_fmt, _sig, _pct, _change, _table = fmt, sig, pct, change, table


# --------------------------------------------------------------------------------------------
# getters (like with like: a paper baseline's TPOT-based numbers are e2e numbers)


def mem_bytes(r: Row) -> float | None:
    return derived.peak_memory_bytes(r.v("peak_allocated_bytes"), r.v("peak_rss_bytes"))


# A stored figure wins (it was measured with the run's own inputs); an older document without
# it gets the same derived.py formula.

def ape_decode(r: Row) -> float | None:
    if r.is_paper:
        return None  # the paper's APE-TPOT is built on e2e tokens/s
    if r.v("ape_tpot") is not None:
        return r.v("ape_tpot")
    return derived.per_active_billion(r.v("decode_tokens_per_s"), r.v("params_active"))


def ape_e2e(r: Row) -> float | None:
    if r.is_paper:
        return r.v("ape_tpot")
    return derived.ape_e2e(r.v("e2e_tokens_per_s"), r.v("params_active"))


def ape_inv_ttft(r: Row) -> float | None:
    if r.v("ape_inv_ttft") is not None:
        return r.v("ape_inv_ttft")
    return derived.ape_inv_ttft(r.v("ttft_ms"), r.v("params_active"))


def ape_energy(r: Row) -> float | None:
    if r.v("ape_energy") is not None:
        return r.v("ape_energy")
    return derived.per_active_billion(r.v("tokens_per_j"), r.v("params_active"))


def decode_per_gb(r: Row) -> float | None:
    if r.is_paper:
        return None
    if r.v("tokens_per_s_per_gb") is not None:
        return r.v("tokens_per_s_per_gb")
    return derived.per_gb(r.v("decode_tokens_per_s"), mem_bytes(r))


def e2e_per_gb(r: Row) -> float | None:
    if r.is_paper:
        return r.v("tokens_per_s_per_gb")
    return derived.per_gb(r.v("e2e_tokens_per_s"), mem_bytes(r))


def _key(key: str, scale: float = 1.0) -> Callable[[Row], float | None]:
    def get(r: Row):
        x = r.v(key)
        return None if x is None else x * scale
    return get


@dataclass
class Col:
    header: str
    get: Callable[[Row], float | None]
    fmt: Callable[[float | None], str] = _sig
    compare: bool = True
    energy: bool = False
    short: str | None = None
    paper_name: str | None = None  # what the paper calls its figure compared with this one

    @property
    def label(self) -> str:
        return self.short or self.header

    @property
    def name(self) -> str:
        """The label without its unit: baseline and change columns repeat this, the unit stays in the header."""
        return without_unit(self.label)


def metric_col(key: str, get: Callable[[Row], float | None] | None = None, **kw) -> Col:
    """A column of one registry metric: header, unit and format from schema.METRICS."""
    m = METRICS_BY_KEY[key]
    fmt = _sig if m.fmt == "sig" else _fmt(int(m.fmt.strip(".f")))
    return Col(m.header, get or _key(key), fmt, energy=m.kind == "energy", short=m.short, **kw)


COL = {
    "ttft": metric_col("ttft_ms"),
    "ttft_p95": metric_col("ttft_ms_p95"),
    "tpot": metric_col("tpot_ms"),
    "itl": metric_col("itl_ms_p50"),
    "e2e_p50": metric_col("e2e_ms_p50"),
    "e2e_p95": metric_col("e2e_ms_p95"),
    "decode": metric_col("decode_tokens_per_s"),
    "e2e": metric_col("e2e_tokens_per_s", paper_name="TPOT"),
    "energy": metric_col("energy_j"),
    "tpj": metric_col("tokens_per_j"),
    "j1k": metric_col("j_per_1k_tokens"),
    "peak_gb": Col("Peak allocated (GB)", _key("peak_allocated_bytes", 1 / GB), _fmt(2),
                   short="Peak alloc. (GB)"),
}


# --------------------------------------------------------------------------------------------
# the report


class Report:
    def __init__(self, results: Results, baseline: Results | None = None):
        self.res = results
        self.base = baseline
        self.footnotes: dict[str, int] = {}
        self.shown: set[str] = set()
        self.plots_written = None  # the PlotSpecs drawn by write_plots (None: not drawn yet, list them all)

    # ---- helpers -------------------------------------------------------------------------
    def note(self, text: str) -> str:
        n = self.footnotes.setdefault(text, len(self.footnotes) + 1)
        return f"[^{n}]"

    def match(self, r: Row, table: str | None = None) -> Row | None:
        if self.base is None:
            return None
        if table:
            hit = self.base.by_id.get(f"{r.case_id}-table{table}")
            if hit is not None:
                return hit
        return self.base.by_id.get(r.case_id)

    def core_rows(self, results: Results | None = None) -> list[Row]:
        res = results or self.res
        order = {name: i for i, name in enumerate(dict.fromkeys(r.series for r in res.rows))}
        return sorted((r for r in res.rows if r.core and r.context is not None),
                      key=lambda r: (order[r.series], r.context))

    def series_names(self) -> list[str]:
        names: list[str] = []
        for r in self.res.rows:
            if r.series not in names:
                names.append(r.series)
        return names

    def largest(self, results: Results | None = None) -> list[Row]:
        """One core row per model at the largest context all models share (else each model's largest)."""
        per: dict[str, dict[int, Row]] = defaultdict(dict)
        for r in self.core_rows(results):
            per[r.series].setdefault(r.context, r)
        if not per:
            return []
        common = set.intersection(*(set(c) for c in per.values()))
        return [rows[max(common)] if common else rows[max(rows)] for rows in per.values()]

    def model_cell(self, r: Row, mark: bool = True) -> str:
        text = r.series
        if r.failed and mark:
            text += " ✗" + self.note(f"`{r.case_id}` failed: {r.error}")
        return text

    def value_cell(self, r: Row, col: Col, value: float | None) -> str:
        if value is None and col.energy and r.ei.get("energy_unavailable"):
            return DASH + self.note(f"energy not measured: {r.ei['energy_unavailable']}")
        return col.fmt(value)

    def paper_side(self) -> bool:
        return self.base is not None and self.base.is_paper

    def metric_table(self, rows: list[Row], keys: list[tuple[str, Callable[[Row], str]]], cols: list[Col],
                     table: str | None = None) -> list[str]:
        """Key columns, then per metric its column and, where the baseline has it under the same
        definition, the baseline's value and the change right after it; split into parts of at most
        report_format.MAX_COLUMNS columns. Key columns after the first that hold one value in every
        row are said once above the table instead."""
        if not rows:
            return ["_No cases for this table in the run._", ""]
        for r in rows:
            self.shown.add(r.case_id)
        matched = [self.match(r, table) for r in rows]
        compared = [c for c in cols if c.compare and any(b is not None and c.get(b) is not None for b in matched)]
        key_cells = [[fn(r) for _, fn in keys] for r in rows]
        keep = [0] + [i for i in range(1, len(keys)) if len(rows) < 2 or len({k[i] for k in key_cells}) > 1]
        same = [f"{keys[i][0]}: {key_cells[0][i]}" for i in range(1, len(keys)) if i not in keep]
        side = "paper" if self.paper_side() else "baseline"
        groups, names = [], []
        for c in cols:
            headers = [c.header]
            cells = []
            for r, b in zip(rows, matched):
                val = None if r.failed else c.get(r)  # a failed case's partial numbers are not results
                line = [self.value_cell(r, c, val)]
                if c in compared:
                    bval = c.get(b) if b is not None else None
                    line += [c.fmt(bval), _pct(_change(val, bval))]
                cells.append(line)
            if c in compared:
                # the paper's own name for its figure stands next to ours only where they are compared
                theirs = f'paper "{c.paper_name}"' if side == "paper" and c.paper_name else f"{c.name} {side}"
                headers += [theirs, f"{c.name} Δ %"]
            groups.append((headers, cells))
            names.append(c.name)
        out = ([f"_All rows: {'; '.join(same)}._", ""] if same else [])
        out += split_table([keys[i][0] for i in keep], [[k[i] for i in keep] for k in key_cells], groups, names)
        if self.base is not None:
            n_matched = sum(b is not None for b in matched)
            missing = [c.name for c in cols if c.compare and c not in compared]
            extra = f" Matched {n_matched} of {len(rows)} rows by case id."
            if n_matched and missing:
                extra += (f" Not compared, the {side} has no value under the same definition: "
                          + ", ".join(missing) + ".")
            out += ["", f"_Δ % = (run − {side}) / {side}." + extra + "_"]
        return out + [""]

    # ---- header ----------------------------------------------------------------------------
    def _meta(self, res: Results) -> dict[str, str]:
        mi, ci = res.machine, res.commit
        gpu = mi.get("gpu")
        gpu_text = DASH
        driver = DASH
        if isinstance(gpu, dict):
            gpu_text = str(gpu.get("name") or DASH)
            mem = _num(gpu.get("memory_total_bytes"))
            if mem:
                gpu_text += f" ({mem / GiB:.1f} GiB)"
            if gpu.get("source"):
                gpu_text += f"; source: {gpu['source']}"
            driver = str(gpu.get("driver") or DASH)
        elif isinstance(gpu, str) and gpu:
            gpu_text = gpu
        else:
            names = {str(r.ei.get("device_name")) for r in res.rows if r.ei.get("device_name")}
            if names:
                gpu_text = "none (" + ", ".join(sorted(names)) + ")"
            elif mi.get("moeperf_device"):
                gpu_text = f"none ({mi['moeperf_device']})"

        def version(name: str) -> str:
            for key in (f"{name}_version", name):
                if mi.get(key):
                    return str(mi[key])
            for key, val in mi.items():
                if isinstance(val, dict):
                    for k2 in (f"{name}_version", name):
                        if isinstance(val.get(k2), (str, int, float)):
                            return str(val[k2])
            return DASH

        commit = DASH
        if ci.get("id"):
            commit = str(ci["id"])[:12]
            extras = [str(ci["branch"])] if ci.get("branch") else []
            if ci.get("dirty"):
                extras.append("dirty")
            if extras:
                commit += " (" + ", ".join(extras) + ")"
        elif ci.get("paper"):
            commit = f"none ({ci['paper']})"
        rounds = sorted({int(x) for r in res.rows for x in (r.ei.get("rounds"), r.stats.get("rounds"))
                         if isinstance(x, (int, float)) and not isinstance(x, bool)})
        failed = sum(r.failed for r in res.rows)
        models = []
        for r in res.rows:
            if r.model not in models:
                models.append(r.model)
        return {
            "File": f"`{res.path}`",
            "Source": "paper (transcribed)" if res.is_paper else "pytest-moeperf run",
            "GPU": gpu_text,
            "Driver": driver,
            "CUDA": version("cuda"),
            "torch": version("torch"),
            "transformers": version("transformers"),
            "pytest-moeperf": version("moeperf"),
            "Python": str(mi.get("python_version") or DASH),
            "Commit": commit,
            "Date": str(res.doc.get("datetime") or DASH),
            "pytest-benchmark": str(res.doc.get("version") or DASH),
            "Cases": f"{len(res.rows)}" + (f" ({failed} failed)" if failed else ""),
            "Rounds": ", ".join(map(str, rounds)) or DASH,
            "Models": ", ".join(models),
        }

    def header(self) -> list[str]:
        out = ["# pytest-moeperf report: MoE vs dense deployment metrics", "",
               "Generated by `python -m pytest_moeperf report` from the benchmark JSON alone"
               + (" and a baseline." if self.base else "."), "", "## Run", ""]
        run = self._meta(self.res)
        if self.base is None:
            out += _table(["", "Run"], [[k, v] for k, v in run.items()])
        else:
            base = self._meta(self.base)
            out += _table(["", "Run", "Baseline"], [[k, v, base[k]] for k, v in run.items()])
            note = self.base.commit.get("note")
            if note:
                out += ["", f"Baseline note: {note}"]
        out += ["", "**Two throughputs.** *Decode throughput* is ours: (n − 1) tokens / (E2E − TTFT), prefill "
                "excluded; *TPOT* is its inverse in ms/token. *E2E throughput* = n / E2E, prefill included, is "
                "what the paper calls \"TPOT (tok/s)\". Against a paper baseline only E2E throughput is compared. "
                "GB are decimal (10⁹ bytes), GiB binary (2³⁰ bytes). \"—\" means no value (not measured, not "
                "applicable, or not reported by the source); footnotes give reasons.", ""]
        return out

    # ---- Tables 1-8 ------------------------------------------------------------------------
    def _keys(self, *names: str) -> list[tuple[str, Callable[[Row], str]]]:
        fns = {
            "Model": self.model_cell,
            "Context (tokens)": lambda r: str(r.context) if r.context is not None else DASH,
            "New tokens": lambda r: str(r.new_tokens) if r.new_tokens is not None else DASH,
            "Case": lambda r: f"`{r.case_id}`",
        }
        return [(n, fns[n]) for n in names]

    def table1(self) -> list[str]:
        rows = self.largest()
        keys = self._keys("Model", "Context (tokens)", "New tokens")
        out = ["### Table 1: Latency at the largest context", "",
               "Per model at the largest core context all models share" + (" (the paper: 2048 tokens, 64 new "
               "tokens)" if self.paper_side() else "") + ". TTFT includes prefill.", ""]
        out += self.metric_table(rows, keys, [COL["ttft"], COL["tpot"], COL["itl"], COL["e2e_p50"], COL["e2e_p95"]])
        out += ["### Table 1b: Throughput at the largest context", "",
                "Decode throughput excludes prefill; E2E throughput includes it.", ""]
        return out + self.metric_table(rows, keys, [COL["decode"], COL["e2e"]])

    def _by_context(self) -> list[Row]:
        return sorted(self.core_rows(), key=lambda r: (r.context, self.series_names().index(r.series)))

    def table2(self) -> list[str]:
        out = ["### Table 2: Throughput and TPOT vs context", "",
               "Decode throughput and TPOT exclude prefill; E2E throughput"
               + (" (the paper's \"TPOT\")" if self.paper_side() else "") + " includes it.", ""]
        cols = [COL["tpot"], COL["decode"], COL["e2e"]]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"), cols)

    def table3(self) -> list[str]:
        out = ["### Table 3: TTFT vs context", "", "TTFT includes prefill.", ""]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"),
                                       [COL["ttft"], COL["ttft_p95"]])

    def table4(self) -> list[str]:
        out = ["### Table 4: Throughput change from the smallest to the largest context", "",
               "Over the smallest and largest context all models share (else each model's own). Negative is a "
               "decline." + (" The paper's Table 4 is 128 → 2048 tokens on its \"TPOT\" (= E2E throughput)."
                             if self.paper_side() else ""), ""]
        groups: dict[str, list[Row]] = defaultdict(list)
        for r in self.core_rows():
            groups[r.series].append(r)
        # like Table 1: over the contexts all models share, where at least two are shared
        common = set.intersection(*({r.context for r in rs} for rs in groups.values())) if groups else set()
        if len(common) >= 2:
            groups = {k: [r for r in rs if r.context in common] for k, rs in groups.items()}
        side = "paper" if self.paper_side() else "baseline"
        key_rows, cells = [], {"decode_tokens_per_s": [], "e2e_tokens_per_s": []}
        for series, rows in groups.items():
            if len(rows) < 2:
                continue
            lo, hi = rows[0], rows[-1]
            key_rows.append([series, f"{lo.context} → {hi.context}"])
            b_lo, b_hi = self.match(lo), self.match(hi)
            for key, line in cells.items():
                a, z = lo.v(key), hi.v(key)
                base = None
                if b_lo is not None and b_hi is not None:
                    base = _change(b_hi.v(key), b_lo.v(key))
                line.append([_fmt(2)(a), _fmt(2)(z), _pct(_change(z, a)), base])
        if not key_rows:
            return out + ["_Needs at least two contexts of one model._", ""]
        parts, names = [], []
        for key, name in (("decode_tokens_per_s", "Decode"), ("e2e_tokens_per_s", "E2E")):
            lines = cells[key]
            with_base = self.base is not None and any(line[3] is not None for line in lines)
            headers = [f"{name} @smallest (tokens/s)", f"{name} @largest (tokens/s)", f"Δ {name} (%)"]
            if with_base:
                headers.append(f"{side} Δ {name} (%)")
            parts.append((headers, [line[:3] + ([_pct(line[3])] if with_base else []) for line in lines]))
            names.append(name)
        out += split_table(["Model", "Context (tokens)"], key_rows, parts, names)
        if any(len(h) == 4 for h, _ in parts):
            out += ["", f"_{side} Δ: the same change over the same two contexts in the {side} (matched by "
                    "case id)._"]
        return out + [""]

    def table5(self) -> list[str]:
        rows = self.largest()
        moe = next((r for r in rows if r.moe), rows[0] if rows else None)
        moe_mem = mem_bytes(moe) if moe is not None else None
        any_rss = any(r.v("peak_rss_bytes") is not None for r in rows)
        any_gpu = any(r.v("peak_allocated_bytes") is not None for r in rows)
        kind = "peak allocated" if any_gpu or not any_rss else "peak RSS"
        name = moe.series if moe is not None else "MoE"

        def delta(r):
            m = mem_bytes(r)
            return None if m is None or moe_mem is None else (m - moe_mem) / GB

        def less(r):
            m = mem_bytes(r)
            return None if m is None or moe_mem is None or not m else (m - moe_mem) / m * 100.0

        # decimal GB throughout (the baseline stores bytes: a paper's MiB are converted, not re-labelled)
        cols = [Col("Weights (GB)", _key("weights_bytes", 1 / GB), _fmt(2)),
                Col("Peak allocated (GB)", _key("peak_allocated_bytes", 1 / GB), _fmt(2)),
                Col("Peak reserved (GB)", _key("peak_reserved_bytes", 1 / GB), _fmt(2)),
                Col("KV cache, analytic (MB)", _key("kv_cache_bytes", 1e-6), _fmt(1), short="KV cache (MB)")]
        if any_rss:
            cols.append(Col("Peak RSS (GB)", _key("peak_rss_bytes", 1 / GB), _fmt(2)))
        cols += [Col(f"Δ vs {name} (GB)", delta, _fmt(2), compare=False),
                 Col(f"% less for {name} vs this model", less, _fmt(2), compare=False)]
        out = ["### Table 5: Peak memory at the largest context", "",
               f"Allocator peak with the KV cache alive (CPU runs: peak RSS). Δ and % less use the {kind} of "
               f"the MoE model ({name}); % less divides by this model's memory, as in the paper.", ""]
        return out + self.metric_table(rows, self._keys("Model", "Context (tokens)"), cols)

    def table6(self) -> list[str]:
        out = ["### Table 6: Energy at the largest context", "",
               "Gross board energy per measured generate() (prefill included); the paper's \"Tokens/W\" is "
               "tokens/J.", ""]
        cols = [COL["decode"], COL["e2e"], COL["energy"], COL["tpj"], COL["j1k"]]
        return out + self.metric_table(self.largest(), self._keys("Model", "Context (tokens)"), cols)

    def table7(self) -> list[str]:
        out = ["### Table 7: Energy per 1k generated tokens vs context", ""]
        cols = [COL["j1k"], COL["tpj"], COL["energy"]]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"), cols)

    def table8(self) -> list[str]:
        out = ["### Table 8: Active-parameter efficiency (APE) at the largest context", "",
               "APE divides by active parameters in billions (B). Ours divides decode throughput; the paper's "
               "APE-TPOT and TPOT/GB divide its E2E \"TPOT\" (prefill included), so a paper baseline is "
               "compared with the E2E columns.", ""]
        cols = [Col("Active params (B)", lambda r: r.active_b, _sig, compare=False),
                metric_col("ape_tpot", ape_decode),
                Col("APE E2E (tokens/s/B)", ape_e2e, _sig, paper_name="APE-TPOT"),
                metric_col("ape_inv_ttft", ape_inv_ttft),
                Col("APE-energy (tokens/J/B)", ape_energy, _sig, energy=True),
                metric_col("tokens_per_s_per_gb", decode_per_gb),
                Col("E2E per peak GB (tokens/s/GB)", e2e_per_gb, _sig, paper_name="TPOT/GB")]
        lines = self.metric_table(self.largest(), self._keys("Model", "Context (tokens)"), cols)
        if self.base is not None and self.base.is_paper:
            lines.insert(-1, "")
            lines.insert(-1, "_The paper's TPOT/GB divides by its Peak VRAM \"MB\"/1000, which are MiB: per "
                             "1000 MiB = 1.049 GB, about 4.9% lower than per decimal GB._")
        return out + lines

    # ---- Tables 9-12 (ablations) -----------------------------------------------------------
    def _ablation_groups(self, axis: str, table: str) -> list[tuple[Row, list[Row]]]:
        """[(reference row or None, [variant rows])] for cases differing from core only in ``axis``."""
        default = DEFAULTS[axis]
        groups: dict[tuple, list[Row]] = defaultdict(list)
        refs: dict[tuple, Row] = {}
        for r in self.res.rows:
            key = (r.series, r.context, r.new_tokens)
            tagged = r.paper_table == table
            if r.variant_axes == frozenset({axis}) and (not r.extra_tokens or tagged):
                groups[key].append(r)
            elif tagged and not r.variant_axes and r.axes.get(axis, default) == default:
                refs[key] = r
        out = []
        for key, variants in groups.items():
            ref = refs.get(key)
            if ref is None:
                ref = next((r for r in self.core_rows() if (r.series, r.context, r.new_tokens) == key), None)
            out.append((ref, variants))
        return out

    def _ablation_table(self, title: str, intro: str, axis: str, table: str, label: str,
                        cols: list[Col], ref_delta: bool = True, status: bool = False) -> list[str]:
        groups = self._ablation_groups(axis, table)
        if not groups:
            return []
        out = [title, "", intro, ""]
        rows: list[Row] = []
        refs: dict[str, Row | None] = {}
        for ref, variants in groups:
            for r in ([ref] if ref is not None else []) + variants:
                rows.append(r)
                refs[r.case_id] = ref

        def delta(key):
            def get(r: Row):
                ref = refs.get(r.case_id)
                return None if ref is None else _change(r.v(key), ref.v(key))
            return get

        keys = [(label, lambda r: str(r.ei.get("paper_label") or r.axes.get(axis, DEFAULTS[axis]))),
                ("Model", lambda r: self.model_cell(r, mark=not status)),
                ("Context (tokens)", lambda r: str(r.context))]
        if status:
            keys.append(("Status", lambda r: ("not run" if r.ei.get("not_run") else "failed") if r.failed
                         else "ok"))
        all_cols = list(cols)
        if ref_delta:
            default = DEFAULTS[axis]
            all_cols += [Col(f"Δ decode vs {default} (%)", delta("decode_tokens_per_s"), _pct, compare=False),
                         Col(f"Δ E2E vs {default} (%)", delta("e2e_tokens_per_s"), _pct, compare=False)]
        lines = self.metric_table(rows, keys, all_cols, table=table)
        if status:
            errs = [f"`{r.case_id}`: {r.error}" for r in rows if r.failed]
            if errs:
                lines.insert(-1, "")
                lines.insert(-1, "Errors: " + "; ".join(errs) + ".")
        return out + lines

    def table9(self) -> list[str]:
        return self._ablation_table(
            "### Table 9: Decoding (greedy vs sampling)",
            "Same model, context and token count; Δ relative to greedy (sampled cases still generate exactly n "
            "tokens).", "decoding", "9", "Decoding",
            [COL["decode"], COL["e2e"], COL["e2e_p50"], COL["tpot"]])

    def table10(self) -> list[str]:
        tagged = [r for r in self.res.rows if r.paper_table == "10"]
        if tagged:
            rows = sorted(tagged, key=lambda r: (r.series, r.context))
        else:
            per: dict[str, list[Row]] = defaultdict(list)
            for r in self.core_rows():
                per[r.series].append(r)
            rows = [r for rs in per.values() if len(rs) >= 3 for r in rs]
        if not rows:
            return []
        first: dict[str, Row] = {}
        for r in rows:
            if r.series not in first or r.context < first[r.series].context:
                first[r.series] = r

        def delta(key):
            return lambda r: _change(r.v(key), first[r.series].v(key))

        cols = [COL["e2e"], Col("Δ E2E vs smallest (%)", delta("e2e_tokens_per_s"), _pct, compare=False),
                COL["decode"], Col("Δ decode vs smallest (%)", delta("decode_tokens_per_s"), _pct, compare=False),
                COL["ttft"], COL["tpot"]]
        out = ["### Table 10: Context-length scaling (greedy)", "",
               "Δ relative to each model's smallest context in this table (the paper's Table 10: 512 tokens).", ""]
        return out + self.metric_table(rows, self._keys("Model", "Context (tokens)"), cols, table="10")

    def table11(self) -> list[str]:
        return self._ablation_table(
            "### Table 11: Numeric precision", "Failed cases are listed with their error.", "dtype", "11",
            "Precision", [COL["decode"], COL["e2e"], COL["peak_gb"]], status=True)

    def table12(self) -> list[str]:
        return self._ablation_table(
            "### Table 12: Serving stack (eager vs static cache + torch.compile)",
            "eager: dynamic KV cache; static: static cache with the compiled decode step.", "backend", "12",
            "Backend", [COL["ttft"], COL["tpot"], COL["decode"], COL["e2e"], COL["e2e_p50"]], status=True)

    def other_cases(self) -> list[str]:
        rest = [r for r in self.res.rows if r.case_id not in self.shown]
        if not rest:
            return []
        out = ["### Other cases", "", "Cases not shown in the tables above.", ""]
        cols = [COL["ttft"], COL["tpot"], COL["decode"], COL["e2e"], COL["peak_gb"], COL["j1k"]]
        keys = self._keys("Case") + [("Status", lambda r: r.error if r.failed else "ok")]
        return out + self.metric_table(rest, keys, cols)

    # ---- definitions, plots, footnotes -----------------------------------------------------
    def definitions(self) -> list[str]:
        out = ["## Definitions", "", "From `pytest_moeperf.metrics.schema.METRICS`.", ""]
        out += _table(["Metric", "Unit", "Better", "Definition"],
                      [[f"`{m.key}`", m.unit, m.direction, m.definition] for m in METRICS])
        out += ["", "Derived in this report: *APE E2E* = e2e_tokens_per_s / active B (the paper's APE-TPOT); "
                "*E2E per peak GB* = e2e_tokens_per_s / peak memory in GB (the paper's TPOT/GB); Δ % = "
                "(new − old) / old × 100.", ""]
        if self.base is not None and self.base.is_paper:
            defs = next((r.ei.get("paper_definitions") for r in self.base.rows
                         if isinstance(r.ei.get("paper_definitions"), dict)), None)
            if defs:
                out += ["### How the paper's definitions map onto ours", ""]
                out += _table(["Metric", "In the paper"], [[f"`{k}`", v] for k, v in defs.items()])
                out.append("")
        return out

    def plots_section(self) -> list[str]:
        from pytest_moeperf.report.report_plots import PLOTS

        specs = self.plots_written if self.plots_written is not None else PLOTS
        if not specs:
            return []
        out = ["## Plots", ""]
        for spec in specs:
            out += [f"![{spec.title}]({spec.file})", "", f"_{spec.caption}_", ""]
        return out

    def markdown(self) -> str:
        lines = self.header()
        lines += ["## Tables 1–8 (core matrix)", ""]
        for fn in (self.table1, self.table2, self.table3, self.table4, self.table5, self.table6, self.table7,
                   self.table8):
            lines += fn()
        ablations = []
        for fn in (self.table9, self.table10, self.table11, self.table12, self.other_cases):
            ablations += fn()
        if ablations:
            lines += ["## Ablations (Tables 9–12)", ""] + ablations
        lines += self.plots_section()
        lines += self.definitions()
        if self.footnotes:
            lines += ["## Notes", ""]
            lines += [f"[^{n}]: {text}" for text, n in self.footnotes.items()]
            lines.append("")
        return "\n".join(lines)

    # ---- plots ---------------------------------------------------------------------------
    def write_plots(self, out: Path) -> list[Path]:
        """Draw the plots (report_plots.PLOTS) into ``out``; the markdown then lists those written."""
        from pytest_moeperf.report.report_plots import write_plots

        written = write_plots(self, out)
        self.plots_written = [spec for spec, _ in written]
        return [path for _, path in written]


__all__ = ["add_arguments", "run", "load_results", "Report", "PLOT_FILES"]
