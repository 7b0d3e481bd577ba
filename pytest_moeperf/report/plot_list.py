"""The report's plots in order (:data:`PLOTS`) and :func:`write_plots`, which draws those with something
to show. Apart from report_plots.py (the drawing helpers and most plots) so that memory_plot.py, which
uses those helpers, is listed here without an import loop."""

from __future__ import annotations

from pathlib import Path

from pytest_moeperf.report import memory_plot
from pytest_moeperf.report.report_plots import (SPREAD_CAPTION, PlotSpec, draw_ape, draw_energy, draw_peak, draw_throughput, draw_tpot,
                                                draw_ttft)

_BASE = " The baseline is dashed (its band hatched where it has samples; the paper has none)."
PLOTS: list[PlotSpec] = [
    PlotSpec("ttft_vs_context.png", "TTFT vs context", SPREAD_CAPTION + _BASE, draw_ttft),
    PlotSpec("tpot_vs_context.png", "TPOT vs context", SPREAD_CAPTION + _BASE, draw_tpot),
    PlotSpec("decode_tps_vs_context.png", "Throughput vs context (decode; E2E incl. prefill)",
             SPREAD_CAPTION + _BASE, draw_throughput),
    PlotSpec("j_per_1k_vs_context.png", "Energy per 1k tokens vs context", SPREAD_CAPTION + _BASE, draw_energy),
    PlotSpec("peak_vram.png", "Peak memory at the largest context",
             "One value per case: the allocator peak over all measured rounds (CPU: peak RSS), so no spread. "
             "Baseline hatched.", draw_peak),
    PlotSpec("memory_vs_context.png", "Memory vs context",
             "One value per case (the allocator peak over all measured rounds; the KV cache after the last token), "
             "so no spread. Left: allocator peak (solid) and weights (dotted). Right: KV cache from the analytic "
             "formula (line) and read from the cache object (open circles); log axes. Crosses: failed cases, with "
             "their reason. The run only (no baseline).", memory_plot.draw),
    PlotSpec("ape.png", "Active-parameter efficiency at the largest context",
             "Bars: the case's APE from its medians. Error bars: 95 % bootstrap interval of the median of the "
             "per-round values divided by the active parameters; above each bar the number of rounds (APE-energy: "
             "energy windows). Baseline hatched.", draw_ape),
]


def write_plots(report, out: Path, specs: list[PlotSpec] | None = None) -> list[tuple[PlotSpec, Path]]:
    """Draw every plot that has something to show into ``out``; returns (spec, path) of each written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    written = []
    for spec in PLOTS if specs is None else specs:
        fig = spec.draw(report, plt)
        if fig is None:
            continue
        fig.tight_layout()
        path = Path(out) / spec.file
        # bbox tight: the legends below the axes stay in the picture; no timestamp in the PNG, so a
        # regenerated report is byte-identical when nothing changed
        fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        written.append((spec, path))
    return written
