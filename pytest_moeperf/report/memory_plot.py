"""The memory-vs-context plot: allocator peak over the weights, and the KV cache measured against its formula.

Left: per model, the allocator peak (solid) and the weights (dotted) over context. Right: the
KV cache the formula gives (``kv_cache_bytes``, line) and the one read from the cache object
(``kv_cache_measured_bytes``, open markers) on log axes. Failed cases are crosses with their
reason at their context. Titles and units from schema.METRICS; matplotlib comes in through ``plt``.
"""

from __future__ import annotations

from collections import defaultdict

from pytest_moeperf.metrics.schema import METRICS_BY_KEY
from pytest_moeperf.report.report_plots import (colors, context_axis, failed_label, failed_points, legend_below,
                                                mark_failed)

GB = 1e9


def _label(key: str, short: bool = False) -> str:
    return METRICS_BY_KEY[key].head("GB", short=short)  # the registry's unit is bytes: shown in decimal GB


def _series(rows, key: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        if not r.failed and r.v(key) is not None:
            out[r.series].append((r.context, r.v(key) / GB))
    return {k: sorted(v) for k, v in out.items()}


def draw(report, plt):
    """The figure, or None when no core case has a memory figure (a CPU run has no allocator peak)."""
    rows = report.core_rows()
    peak, weights = _series(rows, "peak_allocated_bytes"), _series(rows, "weights_bytes")
    analytic, measured = _series(rows, "kv_cache_bytes"), _series(rows, "kv_cache_measured_bytes")
    if not (peak or analytic or measured):
        return None
    cols, failed = colors(report), failed_points(rows)
    contexts = {r.context for r in rows}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for series in dict.fromkeys([*peak, *analytic, *measured, *failed]):
        color = cols.get(series)
        note = f"; {failed_label(failed[series])}" if series in failed else ""
        if series in peak:
            left.plot(*zip(*peak[series]), "-o", color=color, label=f"{series}: peak{note}")
        if series in weights:
            left.plot(*zip(*weights[series]), ":", color=color, linewidth=1.2, label=f"{series}: weights")
        if series in analytic:
            right.plot(*zip(*analytic[series]), "-", color=color, label=f"{series}: analytic{note}")
        if series in measured:
            right.plot(*zip(*measured[series]), "o", mfc="none", color=color, markersize=8,
                       label=f"{series}: measured")
        for ax in (left, right):
            mark_failed(ax, failed.get(series, []), color)
    left.set_ylabel(_label("peak_allocated_bytes"))
    left.set_title("Allocator peak and weights")
    right.set_ylabel(_label("kv_cache_bytes", short=True) + ", log scale")
    right.set_title("KV cache: analytic formula vs measured")
    right.set_yscale("log")
    for ax in (left, right):
        context_axis(ax, contexts)
        if ax.get_legend_handles_labels()[0]:
            legend_below(ax)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return fig
