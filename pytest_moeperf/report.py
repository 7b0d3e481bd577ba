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

from . import derived
from .cases import DEFAULTS
from .schema import METRICS, METRICS_BY_KEY

GB = 1e9
GiB = 2.0**30
DASH = "—"

ABLATION_TABLES = ("9", "10", "11", "12")
PLOT_FILES = ("ttft_vs_context.png", "tpot_vs_context.png", "decode_tps_vs_context.png",
              "j_per_1k_vs_context.png", "peak_vram.png", "ape.png")


# --------------------------------------------------------------------------------------------
# command line


def add_arguments(parser) -> None:
    parser.add_argument("results", metavar="RESULTS.json", help="pytest-benchmark JSON of a run (--benchmark-json)")
    parser.add_argument("--against", metavar="BASELINE.json",
                        help="a baseline to compare with (e.g. baselines/h100/paper-h100.json)")
    parser.add_argument("-o", "--output", metavar="DIR", default="report",
                        help="directory for report.md and the PNG plots (default: report)")


def run(args) -> int:
    results = load_results(args.results)
    baseline = load_results(args.against) if getattr(args, "against", None) else None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(results, baseline)
    markdown = report.markdown()
    import matplotlib

    matplotlib.use("Agg", force=True)
    written = report.write_plots(out)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    print(f"wrote {out / 'report.md'} and {len(written)} plots")
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


def load_results(path) -> Results:
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
        raise ValueError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: not a pytest-benchmark document (top level is not an object)")
    benches = doc.get("benchmarks")
    if not isinstance(benches, list):
        raise ValueError(f"{p}: no 'benchmarks' list (is this a pytest-benchmark --benchmark-json file?)")
    rows = [_row(b) for b in benches if isinstance(b, dict)]
    if not rows:
        raise ValueError(f"{p}: no benchmarks")
    return Results(str(p), doc, rows)


# --------------------------------------------------------------------------------------------
# formatting


def _fmt(nd: int) -> Callable[[float | None], str]:
    def f(x):
        return DASH if x is None else f"{x:,.{nd}f}"
    return f


def _sig(x: float | None) -> str:
    if x is None:
        return DASH
    if x == 0:
        return "0"
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.1f}"


def _pct(x: float | None) -> str:
    return DASH if x is None else f"{x:+.1f}"


def _change(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return (new - old) / abs(old) * 100.0


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


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

    @property
    def label(self) -> str:
        return self.short or self.header


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
    "e2e": metric_col("e2e_tokens_per_s"),
    "energy": metric_col("energy_j"),
    "tpj": metric_col("tokens_per_j"),
    "j1k": metric_col("j_per_1k_tokens"),
    "peak_gib": Col("Peak allocated (GiB)", _key("peak_allocated_bytes", 1 / GiB), _fmt(2),
                    short="Peak alloc. (GiB)"),
}


# --------------------------------------------------------------------------------------------
# the report


class Report:
    def __init__(self, results: Results, baseline: Results | None = None):
        self.res = results
        self.base = baseline
        self.footnotes: dict[str, int] = {}
        self.shown: set[str] = set()

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

    def metric_table(self, rows: list[Row], keys: list[tuple[str, Callable[[Row], str]]], cols: list[Col],
                     table: str | None = None) -> list[str]:
        if not rows:
            return ["_No cases for this table in the run._", ""]
        for r in rows:
            self.shown.add(r.case_id)
        matched = [self.match(r, table) for r in rows]
        compared = [c for c in cols if c.compare and any(b is not None and c.get(b) is not None for b in matched)]
        headers = [k for k, _ in keys]
        for c in cols:
            headers.append(c.header)
            if c in compared:
                headers += [f"{c.label} baseline", f"{c.label} Δ %"]
        body = []
        for r, b in zip(rows, matched):
            line = [fn(r) for _, fn in keys]
            for c in cols:
                val = None if r.failed else c.get(r)  # a failed case's partial numbers are not results
                line.append(self.value_cell(r, c, val))
                if c in compared:
                    bval = c.get(b) if b is not None else None
                    line += [c.fmt(bval), _pct(_change(val, bval))]
            body.append(line)
        out = _table(headers, body)
        if self.base is not None:
            n_matched = sum(b is not None for b in matched)
            missing = [c.label for c in cols if c.compare and c not in compared]
            extra = f" Matched {n_matched} of {len(rows)} rows by case id."
            if n_matched and missing:
                extra += (" Not compared, the baseline has no value under the same definition: "
                          + ", ".join(missing) + ".")
            out += ["", "_Δ % = (run − baseline) / baseline." + extra + "_"]
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
        out = ["### Table 1: Latency at the largest context", "",
               "Per model at the largest core context all models share (the paper: 2048 tokens, 64 new "
               "tokens). TTFT includes prefill.", ""]
        cols = [COL["ttft"], COL["tpot"], COL["itl"], COL["e2e_p50"], COL["e2e_p95"], COL["decode"], COL["e2e"]]
        return out + self.metric_table(rows, self._keys("Model", "Context (tokens)", "New tokens"), cols)

    def _by_context(self) -> list[Row]:
        return sorted(self.core_rows(), key=lambda r: (r.context, self.series_names().index(r.series)))

    def table2(self) -> list[str]:
        out = ["### Table 2: Throughput and TPOT vs context", "",
               "Decode throughput and TPOT exclude prefill; E2E throughput (the paper's \"TPOT\") includes it.", ""]
        cols = [COL["tpot"], COL["decode"], COL["e2e"]]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"), cols)

    def table3(self) -> list[str]:
        out = ["### Table 3: TTFT vs context", "", "TTFT includes prefill.", ""]
        return out + self.metric_table(self._by_context(), self._keys("Context (tokens)", "Model"),
                                       [COL["ttft"], COL["ttft_p95"]])

    def table4(self) -> list[str]:
        out = ["### Table 4: Throughput change from the smallest to the largest context", "",
               "Over the smallest and largest context all models share (else each model's own). Negative is a "
               "decline. The paper's Table 4 is 128 → 2048 tokens on its \"TPOT\" (= E2E throughput).", ""]
        groups: dict[str, list[Row]] = defaultdict(list)
        for r in self.core_rows():
            groups[r.series].append(r)
        # like Table 1: over the contexts all models share, where at least two are shared
        common = set.intersection(*({r.context for r in rs} for rs in groups.values())) if groups else set()
        if len(common) >= 2:
            groups = {k: [r for r in rs if r.context in common] for k, rs in groups.items()}
        body, base_any = [], False
        lines = []
        for series, rows in groups.items():
            if len(rows) < 2:
                continue
            lo, hi = rows[0], rows[-1]
            d_lo, d_hi = lo.v("decode_tokens_per_s"), hi.v("decode_tokens_per_s")
            e_lo, e_hi = lo.v("e2e_tokens_per_s"), hi.v("e2e_tokens_per_s")
            line = [series, f"{lo.context} → {hi.context}", _fmt(2)(d_lo), _fmt(2)(d_hi),
                    _pct(_change(d_hi, d_lo)), _fmt(2)(e_lo), _fmt(2)(e_hi), _pct(_change(e_hi, e_lo))]
            b_lo, b_hi = self.match(lo), self.match(hi)
            bd = be = None
            if b_lo is not None and b_hi is not None:
                bd = _change(b_hi.v("decode_tokens_per_s"), b_lo.v("decode_tokens_per_s"))
                be = _change(b_hi.v("e2e_tokens_per_s"), b_lo.v("e2e_tokens_per_s"))
                base_any = base_any or bd is not None or be is not None
            lines.append((line, bd, be))
        headers = ["Model", "Context (tokens)", "Decode @smallest (tokens/s)", "Decode @largest (tokens/s)",
                   "Δ decode (%)", "E2E @smallest (tokens/s)", "E2E @largest (tokens/s)", "Δ E2E (%)"]
        if self.base is not None and base_any:
            headers += ["Baseline Δ decode (%)", "Baseline Δ E2E (%)"]
        for line, bd, be in lines:
            if self.base is not None and base_any:
                line += [_pct(bd), _pct(be)]
            body.append(line)
        if not body:
            return out + ["_Needs at least two contexts of one model._", ""]
        out += _table(headers, body)
        if self.base is not None and base_any:
            out += ["", "_Baseline Δ: the same change over the same two contexts in the baseline (matched by "
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

        cols = [Col("Weights (GB)", _key("weights_bytes", 1 / GB), _fmt(2), compare=False),
                Col("Weights (GiB)", _key("weights_bytes", 1 / GiB), _fmt(2)),
                Col("Peak allocated (GB)", _key("peak_allocated_bytes", 1 / GB), _fmt(2), compare=False),
                COL["peak_gib"],
                Col("Peak reserved (GiB)", _key("peak_reserved_bytes", 1 / GiB), _fmt(2)),
                Col("KV cache, analytic (MB)", _key("kv_cache_bytes", 1e-6), _fmt(1))]
        if any_rss:
            cols.append(Col("Peak RSS (GiB)", _key("peak_rss_bytes", 1 / GiB), _fmt(2)))
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
                Col("APE E2E, paper's APE-TPOT (tokens/s/B)", ape_e2e, _sig, short="APE E2E"),
                metric_col("ape_inv_ttft", ape_inv_ttft),
                Col("APE-energy (tokens/J/B)", ape_energy, _sig, energy=True, short="APE-energy"),
                metric_col("tokens_per_s_per_gb", decode_per_gb),
                Col("E2E per peak GB, paper's TPOT/GB (tokens/s/GB)", e2e_per_gb, _sig, short="E2E/GB")]
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
            "Precision", [COL["decode"], COL["e2e"], COL["peak_gib"]], status=True)

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
        cols = [COL["ttft"], COL["tpot"], COL["decode"], COL["e2e"], COL["peak_gib"], COL["j1k"]]
        keys = self._keys("Case") + [("Status", lambda r: r.error if r.failed else "ok")]
        return out + self.metric_table(rest, keys, cols)

    # ---- definitions, plots, footnotes -----------------------------------------------------
    def definitions(self) -> list[str]:
        out = ["## Definitions", "", "From `pytest_moeperf.schema.METRICS`.", ""]
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
        out = ["## Plots", ""]
        if self.base is not None:
            out += ["Baseline: dashed lines / hatched bars.", ""]
        titles = ["TTFT vs context", "TPOT vs context", "Throughput vs context (decode; E2E incl. prefill)",
                  "Energy per 1k tokens vs context", "Peak memory at the largest context",
                  "Active-parameter efficiency at the largest context"]
        for name, title in zip(PLOT_FILES, titles):
            out += [f"![{title}]({name})", ""]
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
    def _colors(self) -> dict[str, str]:
        names = self.series_names()
        if self.base is not None:
            names += [r.series for r in self.base.rows if r.series not in names]
        palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"]
        return {n: palette[i % len(palette)] for i, n in enumerate(dict.fromkeys(names))}

    def _line_panel(self, ax, get: Callable[[Row], float | None], ylabel: str, colors: dict,
                    empty: str = "no data") -> None:
        drawn = base_drawn = 0
        contexts: set[int] = set()
        for res, style in ((self.res, "-"), (self.base, "--")):
            if res is None:
                continue
            per: dict[str, list] = defaultdict(list)
            for r in self.core_rows(res):
                val = get(r)
                if val is not None:
                    per[r.series].append((r.context, val))
            for series, pts in per.items():
                xs, ys = zip(*sorted(pts))
                contexts.update(xs)
                label = series + (" (baseline)" if style == "--" else "")
                ax.plot(xs, ys, style, marker="o" if style == "-" else "s", color=colors.get(series),
                        label=label, alpha=1.0 if style == "-" else 0.7)
                drawn += 1
                base_drawn += style == "--"
        ax.set_xlabel("context (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if contexts and max(contexts) / max(1, min(contexts)) >= 4:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(contexts))
            ax.set_xticklabels([str(c) for c in sorted(contexts)])
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
        if drawn and self.base is not None and not base_drawn:
            ax.text(0.01, 0.01, "baseline: no values for this metric", transform=ax.transAxes, fontsize=7,
                    color="gray")

    def _energy_reason(self) -> str:
        reasons = sorted({str(r.ei["energy_unavailable"]) for r in self.res.rows if r.ei.get("energy_unavailable")})
        return "no energy data" + (": " + "; ".join(reasons) if reasons else "")

    def _bar_panel(self, ax, get: Callable[[Row], float | None], ylabel: str, colors: dict,
                   empty: str = "no data", table: str | None = None) -> None:
        rows = self.largest()
        xs, labels = [], []
        drawn = 0
        base_labelled = False
        width = 0.38 if self.base is not None else 0.6
        for i, r in enumerate(rows):
            labels.append(f"{r.series}\nc{r.context}")
            xs.append(i)
            val = get(r)
            if val is not None:
                ax.bar(i - (width / 2 if self.base is not None else 0), val, width, color=colors.get(r.series),
                       label="run" if drawn == 0 else None)
                drawn += 1
            b = self.match(r, table)
            bval = get(b) if b is not None else None
            if bval is not None:
                ax.bar(i + width / 2, bval, width, color=colors.get(r.series), alpha=0.45, hatch="//",
                       edgecolor="black", label=None if base_labelled else "baseline")
                base_labelled = True
                drawn += 1
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
        elif self.base is not None:
            ax.legend(fontsize=8)
            if not base_labelled:
                ax.text(0.01, 0.01, "baseline: no values for this metric", transform=ax.transAxes, fontsize=7,
                        color="gray")

    def write_plots(self, out: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        colors = self._colors()
        written: list[Path] = []

        def save(fig, name):
            path = out / name
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        self._line_panel(ax, _key("ttft_ms"), "TTFT (ms)", colors)
        ax.set_title("Time to first token vs context (prefill included)")
        save(fig, "ttft_vs_context.png")

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        self._line_panel(ax, _key("tpot_ms"), "TPOT (ms/token)", colors,
                         empty="no TPOT (ms/token) values")
        ax.set_title("Time per output token (decode) vs context")
        save(fig, "tpot_vs_context.png")

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
        self._line_panel(a1, _key("decode_tokens_per_s"), "decode throughput (tokens/s)", colors)
        a1.set_title("Decode throughput (prefill excluded)")
        self._line_panel(a2, _key("e2e_tokens_per_s"), "E2E throughput (tokens/s)", colors)
        a2.set_title("E2E throughput incl. prefill (paper's \"TPOT\")")
        save(fig, "decode_tps_vs_context.png")

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        self._line_panel(ax, _key("j_per_1k_tokens"), "energy (J / 1k tokens)", colors, empty=self._energy_reason())
        ax.set_title("Energy per 1k generated tokens vs context")
        save(fig, "j_per_1k_vs_context.png")

        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        any_gpu = any(r.v("peak_allocated_bytes") is not None for r in self.largest())
        self._bar_panel(ax, lambda r: (mem_bytes(r) / GiB) if r is not None and mem_bytes(r) is not None else None,
                        "peak allocated (GiB)" if any_gpu else "peak memory: allocated or RSS (GiB)", colors)
        ax.set_title("Peak memory at the largest context")
        save(fig, "peak_vram.png")

        panels = [(ape_e2e, "APE E2E (tokens/s/B)\npaper's APE-TPOT"), (ape_decode, "APE decode (tokens/s/B)"),
                  (ape_inv_ttft, "APE-1/TTFT (1/s/B)"), (ape_energy, "APE-energy (tokens/J/B)")]
        fig, axes = plt.subplots(1, 4, figsize=(15, 4.2))
        for ax, (get, label) in zip(axes, panels):
            self._bar_panel(ax, lambda r, g=get: g(r) if r is not None else None, label, colors,
                            empty=self._energy_reason() if get is ape_energy else "no data")
        fig.suptitle("Active-parameter efficiency at the largest context")
        save(fig, "ape.png")
        return written


__all__ = ["add_arguments", "run", "load_results", "Report", "PLOT_FILES"]
