"""The report as data and markdown: the paper's Tables 1-12, metadata, definitions, the plots section."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable

from pytest_moeperf.metrics.formats import DASH, bytes_unit
from pytest_moeperf.report.report_format import split_table
from pytest_moeperf.metrics.schema import METRICS, REPORT_METRICS, key_header
from pytest_moeperf.report.columns import COL, Col, _change, _pct, _table, ape_decode, ape_e2e, ape_energy, ape_inv_ttft, bytes_col, decode_per_gb, e2e_per_gb, mem_bytes, metric_col
from pytest_moeperf.report.rows import Results, Row
from pytest_moeperf.report import ablation_tables as abl
from pytest_moeperf.report import context_tables as ctx
from pytest_moeperf.report.failed_cases import failed_text
from pytest_moeperf.report.runs import run_facts, runs_table
from pytest_moeperf.report.scatter import scatter_note
from pytest_moeperf.report.report_plots import PALETTE


def _plot_files() -> tuple[str, ...]:
    from pytest_moeperf.report.plot_list import PLOTS

    return tuple(spec.file for spec in PLOTS)


PLOT_FILES = _plot_files()
# a plot shows at most this many models: the palette's colours, one per model; past it the lines are
# not told apart and drawing them takes minutes (10,000 cases)
MAX_PLOTTED_MODELS = len(PALETTE)


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
        """Core rows by series (in run order), then context; computed once per document (every table reads them)."""
        res = results or self.res
        cache = self.__dict__.setdefault("_core_rows", {})
        if id(res) not in cache:
            order = {name: i for i, name in enumerate(dict.fromkeys(r.series for r in res.rows))}
            cache[id(res)] = sorted((r for r in res.rows if r.core and r.context is not None),
                                    key=lambda r: (order[r.series], r.context))
        only = self.__dict__.get("_plotted_models")  # while drawing: the models the plots show
        return [r for r in cache[id(res)] if only is None or r.model in only]

    def series_names(self) -> list[str]:
        if "_series_names" not in self.__dict__:
            self._series_names = list(dict.fromkeys(r.series for r in self.res.rows))
        return list(self._series_names)

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
        """The model, marked ✗ when the case failed and ⚠ when its rounds scatter more than the gate can use."""
        text = r.series
        if r.failed and mark:
            text += " ✗" + self.note(f"`{r.case_id}` failed: {r.error}")
        elif mark:
            note = scatter_note(r)
            if note:
                text += " ⚠" + self.note(note)
        return text

    def value_cell(self, r: Row, col: Col, value: float | None) -> str:
        if r.failed:  # what happened ("OOM"), never a number: a failed case's partial numbers are not results
            return failed_text(r)
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
    def title(self) -> str:
        return "# pytest-moeperf report: MoE vs dense deployment metrics"

    def header(self) -> list[str]:
        """The run's metadata (and the baseline's) under "## Run"."""
        out = ["## Run", "", "Generated by `python -m pytest_moeperf report` from the benchmark JSON alone"
               + (" and a baseline." if self.base else "."), ""]
        run = run_facts(self.res)
        if self.base is None:
            out += _table(["", "Run"], [[k, v] for k, v in run.items()])
        else:
            base = run_facts(self.base)
            out += _table(["", "Run", "Baseline"], [[k, v, base[k]] for k, v in run.items()])
            note = self.base.commit.get("note")
            if note:
                out += ["", f"Baseline note: {note}"]
        runs = runs_table(self.res)  # several files: which numbers came from which run
        if runs:
            out += [""] + runs[:-1]
        out += ["", "**Two throughputs.** *Decode throughput* is ours: (n − 1) tokens / (E2E − TTFT), prefill "
                "excluded; *TPOT* is its inverse in ms/token. *E2E throughput* = n / E2E, prefill included, is "
                "what the paper calls \"TPOT (tok/s)\". Against a paper baseline only E2E throughput is compared. "
                "GB are decimal (10⁹ bytes), GiB binary (2³⁰ bytes). \"—\" means no value (not measured, not "
                "applicable, or not reported by the source); footnotes give reasons.", ""]
        return out

    # ---- Tables 1-8 ------------------------------------------------------------------------
    def _keys(self, *names: str) -> list[tuple[str, Callable[[Row], str]]]:
        fns = {
            "model": self.model_cell,
            "context_tokens": lambda r: str(r.context) if r.context is not None else DASH,
            "new_tokens": lambda r: str(r.new_tokens) if r.new_tokens is not None else DASH,
            "case": lambda r: f"`{r.case_id}`",
        }
        return [(key_header(n), fns[n]) for n in names]

    def table1(self) -> list[str]:
        rows = self.largest()
        keys = self._keys("model", "context_tokens", "new_tokens")
        out = ["### Table 1: Latency at the largest context", "",
               "Per model at the largest core context all models share" + (" (the paper: 2048 tokens, 64 new "
               "tokens)" if self.paper_side() else "") + ". TTFT includes prefill.", ""]
        out += self.metric_table(rows, keys, [COL["ttft"], COL["tpot"], COL["itl"], COL["e2e_p50"], COL["e2e_p95"]])
        out += ["### Table 1b: Throughput at the largest context", "",
                "Decode throughput excludes prefill; E2E throughput includes it.", ""]
        return out + self.metric_table(rows, keys, [COL["decode"], COL["e2e"]])

    def table5(self) -> list[str]:
        rows = self.largest()
        moe = next((r for r in rows if r.moe), rows[0] if rows else None)
        moe_mem = mem_bytes(moe) if moe is not None else None
        any_rss = any(r.v("peak_rss_bytes") is not None for r in rows)
        any_gpu = any(r.v("peak_allocated_bytes") is not None for r in rows)
        kind = "peak allocated" if any_gpu or not any_rss else "peak RSS"
        name = moe.series if moe is not None else "MoE"

        # each column in the decimal unit that fits it (a CPU model of 330 kB is not 0.00 GB); the baseline
        # stores bytes (a paper's MiB are converted, not re-labelled)
        unit, size = bytes_unit([mem_bytes(r) for r in rows])

        def delta(r):
            m = mem_bytes(r)
            return None if m is None or moe_mem is None else m - moe_mem

        def less(r):
            m = mem_bytes(r)
            return None if m is None or moe_mem is None or not m else (m - moe_mem) / m * 100.0

        cols = [bytes_col(key, rows) for key in ("weights_bytes", "peak_allocated_bytes", "peak_reserved_bytes",
                                                 "kv_cache_bytes")]
        if any_rss:
            cols.append(bytes_col("peak_rss_bytes", rows))
        cols += [bytes_col("memory_vs_ref_bytes", get=delta, unit=unit, names={"ref": name}, compare=False),
                 metric_col("memory_less_for_ref_pct", less, names={"ref": name}, compare=False)]
        out = ["### Table 5: Peak memory at the largest context", "",
               f"Allocator peak with the KV cache alive (CPU runs: peak RSS). Δ and % less use the {kind} of "
               f"the MoE model ({name}); % less divides by this model's memory, as in the paper.", ""]
        return out + self.metric_table(rows, self._keys("model", "context_tokens"), cols)

    def table6(self) -> list[str]:
        out = ["### Table 6: Energy at the largest context", "",
               "Gross board energy per measured generate() (prefill included); the paper's \"Tokens/W\" is "
               "tokens/J.", ""]
        cols = [COL["decode"], COL["e2e"], COL["energy"], COL["tpj"], COL["j1k"]]
        return out + self.metric_table(self.largest(), self._keys("model", "context_tokens"), cols)

    def table8(self) -> list[str]:
        out = ["### Table 8: Active-parameter efficiency (APE) at the largest context", "",
               "APE divides by active parameters in billions (B). Ours divides decode throughput; the paper's "
               "APE-TPOT and TPOT/GB divide its E2E \"TPOT\" (prefill included), so a paper baseline is "
               "compared with the E2E columns.", ""]
        cols = [metric_col("params_active_b", lambda r: r.active_b, compare=False),
                metric_col("ape_tpot", ape_decode),
                metric_col("ape_e2e", ape_e2e),
                metric_col("ape_inv_ttft", ape_inv_ttft),
                metric_col("ape_energy", ape_energy, energy=True),
                metric_col("tokens_per_s_per_gb", decode_per_gb),
                metric_col("e2e_tokens_per_s_per_gb", e2e_per_gb)]
        lines = self.metric_table(self.largest(), self._keys("model", "context_tokens"), cols)
        if self.base is not None and self.base.is_paper:
            lines.insert(-1, "")
            lines.insert(-1, "_The paper's TPOT/GB divides by its Peak VRAM \"MB\"/1000, which are MiB: per "
                             "1000 MiB = 1.049 GB, about 4.9% lower than per decimal GB._")
        return out + lines

    # ---- definitions, plots, footnotes -----------------------------------------------------
    def definitions(self) -> list[str]:
        out = ["## Definitions", "", "From `pytest_moeperf.metrics.schema.METRICS`.", ""]
        out += _table(["Metric", "Unit", "Better", "Definition"],
                      [[f"`{m.key}`", m.unit, m.direction, m.definition] for m in METRICS])
        out += ["", "Derived in this report (`schema.REPORT_METRICS`; `{ref}` is named in each header); Δ % "
                "against a baseline = (new − old) / old × 100.", ""]
        out += _table(["Figure", "Unit", "Definition"], [[f"`{m.key}`", m.unit, m.definition] for m in REPORT_METRICS])
        out.append("")
        if self.base is not None and self.base.is_paper:
            defs = next((r.ei.get("paper_definitions") for r in self.base.rows
                         if isinstance(r.ei.get("paper_definitions"), dict)), None)
            if defs:
                out += ["### How the paper's definitions map onto ours", ""]
                out += _table(["Metric", "In the paper"], [[f"`{k}`", v] for k, v in defs.items()])
                out.append("")
        return out

    def plots_section(self) -> list[str]:
        from pytest_moeperf.report.plot_list import PLOTS

        specs = self.plots_written if self.plots_written is not None else PLOTS
        if not specs:
            return []
        out = ["## Plots", ""]
        models = list(dict.fromkeys(r.model for r in self.res.rows))
        if len(models) > MAX_PLOTTED_MODELS:
            out += [f"_The plots show the first {MAX_PLOTTED_MODELS} of the run's {len(models)} models (one colour "
                    "each); the tables above hold every model._", ""]
        for spec in specs:
            out += [f"![{spec.title}]({spec.file})", "", f"_{spec.caption}_", ""]
        return out

    def case_sections(self) -> list[str]:
        """Tables 1-8 and, where the run has them, the ablations (Tables 9-12, other cases)."""
        lines = ["## Tables 1–8 (core matrix)", ""]
        for fn in CORE_TABLES:
            lines += fn(self)
        ablations = []
        for fn in ABLATION_TABLES:
            ablations += fn(self)
        if ablations:
            lines += ["## Ablations (Tables 9–12)", ""] + ablations
        return lines

    def footnote_lines(self) -> list[str]:
        """The footnotes' texts; markdown renders them at the page's end under their own rule (no heading)."""
        return [f"[^{n}]: {text}" for text, n in self.footnotes.items()] + ([""] if self.footnotes else [])

    def markdown(self) -> str:
        """The whole report of the cases alone (summary.compose adds serving load points where there are)."""
        from pytest_moeperf.report.summary import compose

        return compose(self, [])

    # ---- plots ---------------------------------------------------------------------------
    def write_plots(self, out: Path) -> list[Path]:
        """Draw the plots (plot_list.PLOTS) into ``out``; the markdown then lists those written."""
        from pytest_moeperf.report.plot_list import write_plots

        models = list(dict.fromkeys(r.model for r in self.res.rows))
        self._plotted_models = set(models[:MAX_PLOTTED_MODELS]) if len(models) > MAX_PLOTTED_MODELS else None
        try:
            written = write_plots(self, out)
        finally:
            self._plotted_models = None
        self.plots_written = [spec for spec, _ in written]
        return [path for _, path in written]


# The tables in the page's order, each f(report) -> markdown lines ([] when the run has nothing for it):
# a list of specs, not a class hierarchy; context_tables.py holds the tables over context,
# ablation_tables.py the ablations (Tables 9-12) and the cases no table showed.
CORE_TABLES = [Report.table1, ctx.table2, ctx.table3, ctx.table4, Report.table5, ctx.memory_table, Report.table6,
               ctx.table7, Report.table8]
ABLATION_TABLES = [abl.table9, abl.table10, abl.table11, abl.table12, abl.other_cases]

__all__ = ["Report", "PLOT_FILES", "CORE_TABLES", "ABLATION_TABLES"]
