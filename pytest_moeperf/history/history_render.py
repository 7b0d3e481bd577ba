"""Views of a history (history.History): text, markdown, and a trend plot per metric.

matplotlib is imported only inside :func:`write_plots` (Agg backend).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pytest_moeperf.metrics.formats import format_value
from pytest_moeperf.history.history import ANALYSED, History, Series


def short_name(benchmark: str) -> str:
    """``benchmarks/test_deployment.py::test_generate[gpt-oss-20b-c2048-n64]`` -> ``gpt-oss-20b-c2048-n64``."""
    m = re.search(r"\[(.+)\]$", benchmark)
    return m.group(1) if m else benchmark.rsplit("::", 1)[-1]


def _run_label(source: str, commit: str | None) -> str:
    return f"{commit[:10]} ({source})" if commit else source


def _p(p: float) -> str:
    return f"{p:.2g}"


def change_rows(history: History, newest_first: bool = True) -> list[tuple[str, ...]]:
    rows = []
    for s in history.series:
        for c in s.change_points:
            rows.append((c.when or "", s.gpu, short_name(s.benchmark), f"{s.metric} [{s.unit}]",
                         f"run {c.index + 1} of {len(s.values)}: {_run_label(c.source, c.commit)}",
                         f"{format_value(c.before, s.unit)} -> {format_value(c.after, s.unit)}",
                         f"{c.change_pct:+.1f}", f"{c.change_abs:+.4g}", c.direction, _p(c.p_value)))
    rows.sort(key=lambda r: r[0], reverse=newest_first)
    return [r[1:] for r in rows]


_CP_HEADERS = ("GPU", "benchmark", "metric", "first run after the change", "mean before -> after", "change %",
               "change", "direction", "p (t-test)")
_SERIES_HEADERS = ("GPU", "benchmark", "metric", "runs", "status", "segments (runs each)", "last segment mean")


def series_rows(history: History) -> list[tuple[str, ...]]:
    """One row per analysed series; a benchmark's too-short series share one row."""
    rows, short = [], {}
    for s in history.series:
        if s.status != ANALYSED:
            short.setdefault((s.gpu, s.benchmark, s.status, len(s.values)), []).append(s.metric)
            continue
        segs = s.segments()
        a, b = segs[-1]
        mean = format_value(sum(s.values[a:b]) / (b - a), s.unit)
        rows.append((s.gpu, short_name(s.benchmark), f"{s.metric} [{s.unit}]", str(len(s.values)),
                     f"{len(s.change_points)} change points", " | ".join(str(y - x) for x, y in segs), mean))
    for (gpu, bench, status, n), metrics in short.items():
        rows.append((gpu, short_name(bench), metrics[0] if len(metrics) == 1 else f"{len(metrics)} metrics",
                     str(n), status, "-", "-"))
    return rows


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "---|" * len(headers), *(line(r) for r in rows)])


def render_text(history: History) -> str:
    out = [f"history: {history.runs} runs, {len(history.series)} series"]
    out += [f"note: {n}" for n in history.notes]
    cps = change_rows(history)
    out += ["", f"change points (newest first): {len(cps)}"]
    if cps:
        out.append(_text_table(_CP_HEADERS, cps))
    if history.series:
        out += ["", _text_table(_SERIES_HEADERS, series_rows(history))]
    return "\n".join(out)


def render_markdown(history: History, latest: int | None = None, plots: Sequence[str] = ()) -> str:
    cps = change_rows(history)
    shown = cps[:latest] if latest else cps
    out = ["## moeperf history", "", f"{history.runs} runs, {len(history.series)} series.", ""]
    out += [f"- {n}" for n in history.notes]
    out += ["", f"### Change points, newest first ({len(shown)} of {len(cps)})", ""]
    out.append(_md_table(_CP_HEADERS, shown) if shown else "No change point found.")
    if not latest and history.series:
        out += ["", "### Series", "", _md_table(_SERIES_HEADERS, series_rows(history))]
    if plots:
        out += ["", "### Trend plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(out) + "\n\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower()


PANELS_PER_FIGURE = 12  # a figure of more panels is too tall to read: the rest go to further pages


def _plot_order(series: list[Series]) -> list[Series]:
    """Series with change points first, the largest newest change first; then the others as found."""
    def key(s: Series) -> tuple:
        newest = max(s.change_points, key=lambda c: c.index) if s.change_points else None
        return (newest is None, -abs(newest.change_pct) if newest is not None else 0.0)
    return sorted(series, key=key)


def _draw_panel(ax, s: Series, ticker) -> None:
    x = list(range(1, len(s.values) + 1))
    ax.plot(x, s.values, "o", color="tab:blue", ms=4, label="run value")
    for a, b in s.segments():
        mean = sum(s.values[a:b]) / (b - a)
        ax.hlines(mean, a + 0.6, b + 0.4, colors="tab:green", lw=2)
    for c in s.change_points:
        color = "tab:red" if c.direction == "regression" else "tab:purple"
        ax.axvline(c.index + 0.5, color=color, ls="--", lw=1.2)
        right = c.index > 0.6 * len(s.values)  # late changes: the label left of the line
        ax.annotate(f"{c.change_pct:+.1f}% p={_p(c.p_value)}", (c.index + (0.4 if right else 0.6), 0.97),
                    xycoords=("data", "axes fraction"), va="top", ha="right" if right else "left",
                    fontsize=8, color=color)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_title(short_name(s.benchmark), fontsize=9, loc="left")
    ax.set_ylabel(s.unit, fontsize=8)
    ax.set_xlim(0.5, max(len(s.values), 1) + 0.5)
    ax.grid(alpha=0.3)


def write_plots(history: History, outdir: Path) -> list[Path]:
    """PNGs per (GPU, metric): a panel per benchmark, the runs in order, each stable segment's
    mean as a line over its runs, and each change point as a dashed line with its change and
    p-value. At most PANELS_PER_FIGURE panels a figure, the series with the largest changes
    first; more benchmarks go to further pages (``…-p2.png``, ...)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    groups: dict[tuple[str, str], list[Series]] = defaultdict(list)
    for s in history.series:
        if s.status == ANALYSED:  # too-short series are listed in the tables, not drawn
            groups[(s.gpu, s.metric)].append(s)
    written = []
    outdir.mkdir(parents=True, exist_ok=True)
    for (gpu, metric), series in groups.items():
        ordered = _plot_order(series)
        pages = [ordered[i:i + PANELS_PER_FIGURE] for i in range(0, len(ordered), PANELS_PER_FIGURE)]
        for number, page in enumerate(pages, 1):
            height = 2.2 * len(page) + 0.7
            fig, axes = plt.subplots(len(page), 1, figsize=(9, height), squeeze=False)
            for ax, s in zip(axes[:, 0], page):
                _draw_panel(ax, s, matplotlib.ticker)
            axes[-1, 0].set_xlabel(f"run ({page[0].runs[0].ordered_by if page[0].runs else 'order'} order)")
            of = f" (page {number} of {len(pages)})" if len(pages) > 1 else ""
            fig.suptitle(f"{metric} on {gpu}{of}: segments (green: mean), change points (dashed: red regression, "
                         f"purple improvement)", fontsize=9, y=0.995, va="top")
            fig.tight_layout()
            fig.subplots_adjust(top=1 - 0.4 / height)  # room for the title
            path = outdir / (f"history-{_slug(gpu)}-{metric}" + (f"-p{number}" if number > 1 else "") + ".png")
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
    return written
