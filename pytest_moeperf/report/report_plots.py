"""The report's plots: medians with the spread of the stored samples, and the baseline beside them.

Each point is the case's median (the number in the tables). Around it, from the per-round (or
per-energy-window) values in ``extra_info["samples"]``: a shaded band from the 10th to the 90th
percentile (how much the rounds scatter) and error bars for the 95% bootstrap interval of the
median (how well the median itself is pinned down; stats.median_ci95). The legend gives n. The
baseline is drawn dashed (bars: hatched) where it has values, with its own band where it has
samples (the paper has none).

A plot is a :class:`PlotSpec`; plot_list.py lists them (:data:`PLOTS`, with memory_plot's) and draws
them. matplotlib is imported only when drawing (Agg backend).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from pytest_moeperf.metrics.schema import METRICS_BY_KEY
from pytest_moeperf.metrics.stats import median_ci95, percentile

GiB = 2.0**30
BAND = (10, 90)  # percentiles of the shaded band
LOG_Y_SPAN = 30  # a line plot whose values span this factor or more gets a log y axis
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]

SPREAD_CAPTION = (f"Points: median per case. Shaded band: {BAND[0]}th–{BAND[1]}th percentile of the "
                  "per-round values (energy: per window). Error bars: 95 % bootstrap interval of the median "
                  "(percentile method, 2,000 resamples). The legend gives each series' rounds (energy: windows).")


@dataclass(frozen=True)
class PlotSpec:
    file: str  # PNG file name in the output folder
    title: str
    caption: str
    draw: Callable  # draw(report, plt) -> matplotlib Figure, or None when the run has nothing to plot


def _num_list(xs) -> list[float]:
    return [float(x) for x in xs or [] if isinstance(x, (int, float)) and not isinstance(x, bool)]


def samples_of(row, key: str, scale: Callable[[float], float] | None = None) -> list[float]:
    """The per-round/per-window values stored for metric ``key`` (schema.Metric.samples), maybe scaled."""
    if row is None:
        return []
    metric = METRICS_BY_KEY.get(key)
    store = row.ei.get("samples") if isinstance(row.ei.get("samples"), dict) else {}
    vals = _num_list(store.get(metric.samples if metric and metric.samples else key))
    return [scale(v) for v in vals] if scale else vals


def spread(values: list[float]) -> dict | None:
    """Band and median interval of a sample list; None under two values."""
    if len(values) < 2:
        return None
    return {"lo": percentile(values, BAND[0]), "hi": percentile(values, BAND[1]), "ci": median_ci95(values),
            "n": len(values)}


def _n_text(ns: list[int], unit: str) -> str:
    # "5–20 rounds", not "n = ...": a series name may already hold "(n=64)", the new tokens
    if not ns:
        return "no samples"
    lo, hi = min(ns), max(ns)
    return f"{lo} {unit}" if lo == hi else f"{lo}–{hi} {unit}"


MAX_LEGEND = 24  # entries; past this a legend covers the page and takes most of the drawing time


def legend_below(ax) -> None:
    """The legend below the axes (inside, with up to ten series, it covered the data); with more than
    MAX_LEGEND entries a line saying so instead: the tables name every series."""
    handles, labels = ax.get_legend_handles_labels()
    if len(handles) > MAX_LEGEND:
        ax.text(0.5, -0.2, f"{len(handles)} lines: too many for a legend (colours repeat); the tables give each "
                "series' values", ha="center", va="top", transform=ax.transAxes, fontsize=7)
    elif handles:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def model_palette(models) -> dict[str, str]:
    """One colour per model, in the order given (the report passes every model of the page, once)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(models))}


def series_colors(model_of: dict[str, str], model_colors: dict[str, str] | None = None) -> dict[str, str]:
    """Each series its model's colour; a model's second series (other new tokens, other engine
    settings) takes a colour no model of the page uses, so the lines of one plot stay apart."""
    model_colors = model_colors or model_palette(model_of.values())
    spare = [c for c in PALETTE if c not in model_colors.values()]
    cols: dict[str, str] = {}
    for series, model in model_of.items():
        color = model_colors.get(model)
        if color is None or color in cols.values():
            color = spare.pop(0) if spare else PALETTE[len(cols) % len(PALETTE)]
        cols[series] = color
    return cols


def colors(report) -> dict[str, str]:
    """One colour per series of the run (its model's: report.model_colors where the page set it); a
    baseline series takes the colour of the run's series of the same model (the paper's "gpt-oss-20b"
    beside the run's "gpt-oss-20b (n=64)")."""
    model_of = {r.series: r.model for r in report.res.rows}
    cols = series_colors(model_of, getattr(report, "model_colors", None))
    model_color: dict[str, str] = {}
    for series, model in model_of.items():
        model_color.setdefault(model, cols[series])
    if report.base is not None:
        for r in report.base.rows:
            if r.series not in cols:
                cols[r.series] = model_color.get(r.model) or PALETTE[len(cols) % len(PALETTE)]
    return cols


def base_name(report) -> str:
    return "paper" if report.base is not None and report.base.is_paper else "baseline"


def line_panel(report, ax, key: str, ylabel: str, cols: dict, empty: str = "no data",
               scale: float = 1.0) -> None:
    """One line per series over context: medians, p10–p90 band, 95% CI of the median; baseline dashed."""
    unit = "windows" if METRICS_BY_KEY.get(key) and METRICS_BY_KEY[key].kind == "energy" else "rounds"
    drawn = base_drawn = 0
    contexts: set[int] = set()
    values: list[float] = []
    sources = [(report.res, False)] + ([(report.base, True)] if report.base is not None else [])
    n_series = max(1, len(report.series_names()))
    for res, is_base in sources:
        per: dict[str, list] = defaultdict(list)
        for r in report.core_rows(res):
            val = r.v(key)
            if val is not None and not r.failed:
                per[r.series].append((r.context, val * scale, spread(samples_of(r, key, lambda v: v * scale)), r))
        failed = {} if is_base else failed_points(report.core_rows(res))
        for i, series in enumerate(dict.fromkeys([*per, *failed])):
            pts = sorted(per.get(series, []), key=lambda p: p[0])
            # a small sideways shift per series keeps error bars of equal contexts apart
            shift = 1.0 + 0.025 * (i - (n_series - 1) / 2) + (0.012 if is_base else 0.0)
            xs = [p[0] * shift for p in pts]
            ys = [p[1] for p in pts]
            contexts.update(p[0] for p in pts)
            values += ys
            color = cols.get(series)
            marks = failed.get(series, [])
            mark_failed(ax, [(c * shift, text) for c, text in marks], color)
            contexts.update(c for c, _ in marks)
            if not pts:  # every case of the series failed: its crosses still get a legend entry
                if marks:
                    ax.plot([], [], "x", color=color, label=f"{series}: {failed_label(marks)}")
                    drawn += 1
                continue
            label = _series_label(report, series, pts, unit, is_base, marks)
            ax.plot(xs, ys, "--" if is_base else "-", marker="s" if is_base else "o", color=color, label=label,
                    alpha=0.75 if is_base else 1.0, markersize=4 if is_base else 5, linewidth=1.2 if is_base else 1.8)
            _spread_marks(ax, xs, ys, pts, color, is_base)
            drawn += 1
            base_drawn += is_base
    context_axis(ax, contexts)
    ax.set_ylabel(ylabel)
    _log_y_if_wide(ax, values, ylabel)
    if drawn:
        legend_below(ax)
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
    if drawn and report.base is not None and not base_drawn:
        ax.text(0.01, 0.01, f"{base_name(report)}: no values for this metric", transform=ax.transAxes, fontsize=7,
                color="gray")


def _series_label(report, series: str, pts: list, unit: str, is_base: bool, marks: list) -> str:
    """A series' legend entry: its name, the n behind its medians, and its failed contexts."""
    ns = [p[2]["n"] for p in pts if p[2]]
    if not ns:  # no samples: say what n the summary came from (a paper's rounds)
        ns_text = _n_text(sorted({int(p[3].ei["rounds"]) for p in pts
                                  if isinstance(p[3].ei.get("rounds"), int)}), "rounds") + ", no samples"
    else:
        ns_text = _n_text(ns, unit)
    label = f"{series}, {base_name(report)}: {ns_text}" if is_base else f"{series}: {ns_text}"
    return label + ("; " + failed_label(marks) if marks else "")


def _spread_marks(ax, xs: list, ys: list, pts: list, color, is_base: bool) -> None:
    """A series' p10-p90 band (a bar at a single context) and the 95% CI of each median."""
    banded = [(x, p[2]) for x, p in zip(xs, pts) if p[2]]
    if len(banded) >= 2:
        ax.fill_between([x for x, _ in banded], [s["lo"] for _, s in banded], [s["hi"] for _, s in banded],
                        color=color, alpha=0.08 if is_base else 0.18, linewidth=0,
                        hatch="//" if is_base else None)
    elif len(banded) == 1:
        x, s = banded[0]
        ax.vlines(x, s["lo"], s["hi"], color=color, alpha=0.3, linewidth=6)
    ci = [(x, y, p[2]["ci"]) for x, y, p in zip(xs, ys, pts) if p[2] and p[2]["ci"]]
    if ci:
        ax.errorbar([c[0] for c in ci], [c[1] for c in ci],
                    yerr=[[max(0.0, c[1] - c[2][0]) for c in ci], [max(0.0, c[2][1] - c[1]) for c in ci]],
                    fmt="none", ecolor=color, elinewidth=1.2, capsize=3, alpha=0.9)


def _log_y_if_wide(ax, values: list[float], ylabel: str) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= LOG_Y_SPAN:  # else the short contexts lie flat on 0
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 100, 1000, not 10^2, 10^3
        ax.set_ylabel(f"{ylabel}, log scale")


def context_axis(ax, contexts: set[int]) -> None:
    """The context x axis: log2 with a tick at each context where they span 4x or more."""
    from pytest_moeperf.metrics.schema import key_header

    ax.set_xlabel(key_header("context_tokens"))
    ax.grid(True, alpha=0.3)
    if contexts and max(contexts) / max(1, min(contexts)) >= 4:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(contexts))
        ax.set_xticklabels([str(c) for c in sorted(contexts)])
        ax.minorticks_off()


def failed_points(rows) -> dict[str, list[tuple[int, str]]]:
    """Per series, (context, short reason) of its failed cases: drawn as a cross, never as a value."""
    from pytest_moeperf.report.failed_cases import failed_text

    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in rows:
        if r.failed and r.context is not None:
            out[r.series].append((r.context, failed_text(r)))
    return {k: sorted(v) for k, v in out.items()}


def failed_label(marks: list[tuple[int, str]]) -> str:
    """The legend's words for a series' failed contexts: "OOM at 16384, 32768"."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for context, text in marks:
        by_reason[text].append(str(context))
    return "; ".join(f"{text} at {', '.join(cs)}" for text, cs in by_reason.items())


def mark_failed(ax, points: list[tuple[float, str]], color) -> None:
    """A cross and its reason ("OOM") at the bottom of the axes, at the failed case's context."""
    for x, text in points:
        ax.plot([x], [0.03], marker="x", markersize=8, mew=2, color=color, transform=ax.get_xaxis_transform(),
                clip_on=False, linestyle="none")
        ax.annotate(text, (x, 0.03), xycoords=ax.get_xaxis_transform(), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7, color=color)


def bar_panel(report, ax, get: Callable, ylabel: str, cols: dict, empty: str = "no data",
              samples: Callable | None = None) -> None:
    """Bars at the largest context; ``samples(row)`` gives per-round values for the 95% CI error bars."""
    rows = report.largest()
    xs, labels = [], []
    drawn = 0
    labelled: set[str] = set()
    width = 0.38 if report.base is not None else 0.6
    for i, r in enumerate(rows):
        labels.append(r.series.replace(" (", "\n(") + f"\nc{r.context}")
        xs.append(i)
        val = None if r.failed else get(r)
        b = report.match(r)
        bval = get(b) if b is not None else None
        for value, row, is_base in ((val, r, False), (bval, b, True)):
            if value is None:
                continue
            x = i + (width / 2 if is_base else (-width / 2 if report.base is not None else 0))
            vals = samples(row) if samples else []
            sp = spread(vals)
            n = f"{sp['n']}" if sp else None
            key = "base" if is_base else "run"
            label = None
            if key not in labelled:
                label = base_name(report) if is_base else "run"
                labelled.add(key)
            ax.bar(x, value, width, color=cols.get(r.series), alpha=0.45 if is_base else 1.0,
                   hatch="//" if is_base else None, edgecolor="black" if is_base else None, label=label)
            if sp and sp["ci"]:
                lo, hi = sp["ci"]
                ax.errorbar([x], [value], yerr=[[max(0.0, value - lo)], [max(0.0, hi - value)]], fmt="none",
                            ecolor="black", elinewidth=1, capsize=3)
            if n:
                ax.annotate(n, (x, value), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=6)
            drawn += 1
    ax.set_xticks(xs)
    if len(rows) > 3:  # side by side, the names ran into each other: one slanted line each
        ax.set_xticklabels([" ".join(label.split("\n")) for label in labels], fontsize=7, rotation=35,
                           ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True)
    elif report.base is not None:
        ax.legend(fontsize=8)
        if "base" not in labelled:
            ax.text(0.01, 0.01, f"{base_name(report)}: no values for this metric", transform=ax.transAxes,
                    fontsize=7, color="gray")


def energy_reason(report) -> str:
    reasons = sorted({str(r.ei["energy_unavailable"]) for r in report.res.rows if r.ei.get("energy_unavailable")})
    return "no energy data" + (": " + "; ".join(reasons) if reasons else "")


# --- the plots ------------------------------------------------------------------------------------

def _single(plt, report, key, ylabel, title, empty="no data"):
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    line_panel(report, ax, key, ylabel, colors(report), empty=empty)
    ax.set_title(title)
    return fig


def _head(key: str, unit: str | None = None) -> str:
    """An axis label: the registry's header of the figure (schema.METRICS, REPORT_METRICS)."""
    from pytest_moeperf.metrics.schema import VIEW_METRICS_BY_KEY

    return VIEW_METRICS_BY_KEY[key].head(unit)


def draw_ttft(report, plt):
    return _single(plt, report, "ttft_ms", _head("ttft_ms"), "Time to first token vs context (prefill included)")


def draw_tpot(report, plt):
    return _single(plt, report, "tpot_ms", _head("tpot_ms"), "Time per output token (decode) vs context",
                   empty=f"no {_head('tpot_ms')} values")


def draw_throughput(report, plt):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
    line_panel(report, a1, "decode_tokens_per_s", _head("decode_tokens_per_s"), colors(report))
    a1.set_title("Decode throughput (prefill excluded)")
    line_panel(report, a2, "e2e_tokens_per_s", _head("e2e_tokens_per_s"), colors(report))
    a2.set_title("E2E throughput incl. prefill" + (" (paper's \"TPOT\")" if base_name(report) == "paper" else ""))
    return fig


def draw_energy(report, plt):
    return _single(plt, report, "j_per_1k_tokens", _head("j_per_1k_tokens"),
                   "Energy per 1k generated tokens vs context", empty=energy_reason(report))


def draw_peak(report, plt):
    from pytest_moeperf.report.columns import mem_bytes

    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    any_gpu = any(r.v("peak_allocated_bytes") is not None for r in report.largest())
    bar_panel(report, ax, lambda r: (mem_bytes(r) / 1e9) if r is not None and mem_bytes(r) is not None else None,
              _head("peak_allocated_bytes" if any_gpu else "peak_memory_bytes", "GB"), colors(report))
    ax.set_title("Peak memory at the largest context")
    return fig


def draw_ape(report, plt):
    from pytest_moeperf.metrics import derived
    from pytest_moeperf.report.columns import ape_decode, ape_e2e, ape_energy, ape_inv_ttft

    def per_b(key, formula):  # the per-round (per-window) samples through derived.py's formula
        def get(r):
            a = r.v("params_active") if r is not None else None
            values = [formula(v, a) for v in samples_of(r, key)] if a else []
            return [v for v in values if v is not None]
        return get

    e2e_label = _head("ape_e2e") + ("\npaper's APE-TPOT" if base_name(report) == "paper" else "")
    panels = [(ape_e2e, e2e_label, per_b("e2e_tokens_per_s", derived.ape_e2e)),
              (ape_decode, _head("ape_tpot"), per_b("decode_tokens_per_s", derived.ape_tpot)),
              (ape_inv_ttft, _head("ape_inv_ttft"), per_b("ttft_ms", derived.ape_inv_ttft)),
              (ape_energy, _head("ape_energy"), per_b("tokens_per_j", derived.ape_energy))]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    for ax, (get, label, samp) in zip(axes, panels):
        bar_panel(report, ax, lambda r, g=get: g(r) if r is not None else None, label, colors(report),
                  empty=energy_reason(report) if get is ape_energy else "no data",
                  samples=lambda r, s=samp: s(r) if r is not None and not r.is_paper else [])
    fig.suptitle("Active-parameter efficiency at the largest context")
    return fig
