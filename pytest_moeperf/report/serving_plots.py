"""The serving plots: Pareto (output tokens/s per GPU against tokens/s per user), latency percentiles vs
concurrency (p50 line, p50-p90 band, p99 dashed), goodput vs offered rate, J/token vs load.

A plot with nothing to show (no closed-loop sweep, no open-loop points, energy unavailable) is not
drawn, so the report shows no empty frame. Load axes are log 2 with the loads measured as plain
ticks (1, 2, 4, not 2^0). Each series takes its model's colour (report_plots.series_colors: the
same colour as in the single-request plots of the same report).
"""

from __future__ import annotations

from pathlib import Path

from pytest_moeperf.metrics.schema import METRICS_BY_KEY, key_header, pair_header
from pytest_moeperf.report.report_plots import series_colors
from pytest_moeperf.report.serving_view import group

PARETO = ("serving_pareto.png", "Throughput vs interactivity")
LATENCY = ("serving_latency_vs_load.png", "Latency vs load")
GOODPUT = ("serving_goodput_vs_rate.png", "Goodput vs offered rate")
ENERGY = ("serving_j_per_token_vs_load.png", "J per token vs load")


def plain_load_axis(ax, loads) -> None:
    """Log 2 x axis with a plain tick at every load measured."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(loads))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def _pareto(ax, closed, colors) -> bool:
    drawn = False
    for s, pts in closed.items():
        xy = [(x.get("output_tokens_per_s_per_user"), x.get("output_tokens_per_s"), x["load_value"]) for x in pts]
        xy = [p for p in xy if p[0] is not None and p[1] is not None]
        if xy:
            drawn = True
            ax.plot([p[0] for p in xy], [p[1] for p in xy], "o-", color=colors[s], label=s)
            for px, py, load in xy:
                ax.annotate(f"{load:g}", (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(METRICS_BY_KEY["output_tokens_per_s_per_user"].header)
    ax.set_ylabel(METRICS_BY_KEY["output_tokens_per_s"].header)
    ax.set_title("Throughput vs interactivity (labels: concurrent users)")
    return drawn


def _latency(axes, closed, colors) -> bool:
    drawn = False
    for ax, key in zip(axes, ("req_ttft_ms", "req_tpot_ms", "req_e2e_ms")):
        label = pair_header(key)
        loads = []
        for s, pts in closed.items():
            xs = [x["load_value"] for x in pts]
            p50, p90, p99 = ([x.get(f"{key}_p{q}") for x in pts] for q in (50, 90, 99))
            if any(v is None for v in p50 + p90 + p99):
                continue
            drawn = True
            loads += xs
            ax.plot(xs, p50, "o-", color=colors[s], label=f"{s} p50")
            ax.fill_between(xs, p50, p90, color=colors[s], alpha=0.2)
            ax.plot(xs, p99, "--", color=colors[s], alpha=0.8, label=f"{s} p99")
        if loads:
            plain_load_axis(ax, loads)
        ax.set_xlabel(key_header("concurrent_users"))
        ax.set_ylabel(label)
        ax.set_title(f"{METRICS_BY_KEY[key + '_p50'].title[:-4]}: p50, p50-p90 band, p99 dashed")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return drawn


def _goodput(ax, opened, colors) -> bool:
    for s, pts in opened.items():
        xs = [x["load_value"] for x in pts]
        ax.plot(xs, [x.get("goodput_req_per_s") or 0 for x in pts], "o-", color=colors[s], label=f"{s} goodput")
        ax.plot(xs, [x.get("request_throughput_per_s") or 0 for x in pts], ":", color=colors[s],
                label=f"{s} throughput")
    top = max(x["load_value"] for pts in opened.values() for x in pts)
    ax.plot([0, top], [0, top], color="grey", lw=0.8, label="offered rate")
    slo = (next(iter(opened.values()))[0].get("slo") or {}).get("name", "")
    ax.set_title(f"Goodput vs offered rate (SLO {slo})")
    ax.set_xlabel(key_header("offered_rate_per_s"))
    ax.set_ylabel(METRICS_BY_KEY["goodput_req_per_s"].header)  # the legend tells goodput from throughput
    return True


def _energy(ax, closed, colors) -> bool:
    loads = []
    for s, pts in closed.items():
        xy = [(x["load_value"], x.get("j_per_output_token")) for x in pts if x.get("j_per_output_token") is not None]
        if xy:
            loads += [p[0] for p in xy]
            ax.plot([p[0] for p in xy], [p[1] for p in xy], "o-", color=colors[s], label=s)
    if loads:
        plain_load_axis(ax, loads)
    ax.set_xlabel(key_header("concurrent_users"))
    ax.set_ylabel(METRICS_BY_KEY["j_per_output_token"].header)
    ax.set_title("Energy per output token vs load")
    return bool(loads)


def write_plots(benches: list[dict], out: Path, model_colors: dict[str, str] | None = None
                ) -> list[tuple[str, str]]:
    """Draw the serving plots that have something to show into ``out``; returns (file, title) of each."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = group(benches)
    model_of = {s: pts[0].get("model", s) for (s, _), pts in groups.items()}
    colors = series_colors(model_of, model_colors)
    closed = {s: pts for (s, c), pts in groups.items() if c}
    opened = {s: pts for (s, c), pts in groups.items() if not c}
    plan = [(PARETO, (6.4, 4.6), 1, lambda ax: _pareto(ax, closed, colors)),
            (LATENCY, (14, 4.2), 3, lambda axes: _latency(axes, closed, colors)),
            (GOODPUT, (6.4, 4.2), 1, lambda ax: bool(opened) and _goodput(ax, opened, colors)),
            (ENERGY, (6.4, 4.2), 1, lambda ax: _energy(ax, closed, colors))]
    written = []
    for (file, title), size, panels, draw in plan:
        fig, ax = plt.subplots(1, panels, figsize=size)
        if draw(ax):
            for a in (ax if panels > 1 else [ax]):
                a.grid(alpha=0.3)
            if panels == 1 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(Path(out) / file, dpi=100, metadata={"Software": None})
            written.append((file, title))
        plt.close(fig)
    return written
