"""The report as data and markdown: the paper's Tables 1-12, metadata, definitions, the plots section."""

from __future__ import annotations

import math

from collections import defaultdict
from pathlib import Path
from typing import Callable

from pytest_moeperf.model.cases import DEFAULTS
from pytest_moeperf.report.report_format import DASH, split_table
from pytest_moeperf.metrics.schema import METRICS
from pytest_moeperf.report.columns import COL, Col, GB, GiB, _change, _fmt, _key, _pct, _sig, _table, ape_decode, ape_e2e, ape_energy, ape_inv_ttft, decode_per_gb, e2e_per_gb, mem_bytes, metric_col
from pytest_moeperf.report.rows import Results, Row, _num
from pytest_moeperf.report.context_tables import ContextTables
from pytest_moeperf.report.failed_cases import failed_text
from pytest_moeperf.report.runs import runs_table


def _plot_files() -> tuple[str, ...]:
    from pytest_moeperf.report.report_plots import PLOTS

    return tuple(spec.file for spec in PLOTS)


PLOT_FILES = _plot_files()


# --------------------------------------------------------------------------------------------
# the report


class Report(ContextTables):
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
                         if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)})
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
        for fn in (self.table1, self.table2, self.table3, self.table4, self.table5, self.memory_table, self.table6,
                   self.table7, self.table8):
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


__all__ = ["Report", "PLOT_FILES"]
