"""The serving part of ``python -m pytest_moeperf report``: plots and tables of load points.

Plots (matplotlib): the Pareto curve (output tokens/s per GPU against tokens/s per user, one
line per model and engine setting), latency percentiles vs concurrency (p50 line, p50-p90 band,
p99 dashed), goodput vs offered rate, J/token vs load. Tables: every load point, each sweep's
knee (sweep.py's rule), and the load at which the MoE model's advantage over each dense model
vanishes. Reads only extra_info written by serving/runner.py; pure apart from matplotlib.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .sweep import RULE, SweepPoint, knee

ADVANTAGE_METRICS = (  # (key, label, higher is better)
    ("output_tokens_per_s", "output tokens/s", True),
    ("req_tpot_ms_p50", "TPOT p50", False),
    ("j_per_output_token", "J/token", False),
)


def is_serving(bench: dict) -> bool:
    return "load_point" in (bench.get("extra_info") or {})


def _series(x: dict) -> str:
    cg = x.get("cuda_graphs") or "auto"
    return x["model"] + ("" if cg == "auto" else f" (CUDA graphs {cg})")


def group(benches: list[dict]) -> dict:
    """{(series, closed_loop): [extra_info sorted by load]}"""
    out = defaultdict(list)
    for b in benches:
        x = b["extra_info"]
        out[(_series(x), x["load_mode"] == "concurrency")].append(x)
    return {k: sorted(v, key=lambda x: x["load_value"]) for k, v in out.items()}


def _f(v, fmt=".4g") -> str:
    return "—" if v is None else format(v, fmt)


def knees(groups: dict) -> list[tuple[str, str, str]]:
    rows = []
    for (series, closed), pts in groups.items():
        k = knee([SweepPoint(x["load_value"], x.get("output_tokens_per_s"), x.get("req_ttft_ms_p50")) for x in pts])
        what = "users" if closed else "requests/s"
        loads = ", ".join(f"{x['load_value']:g}" for x in pts)
        rows.append((series, f"{'concurrency' if closed else 'rate'} ({what}) over {loads}",
                     f"{k.load:g} ({_f(k.output_tokens_per_s)} tokens/s)" if k else "not reached"))
    return rows


def advantage_table(groups: dict) -> list[list[str]]:
    """For each MoE x dense pair on the closed-loop sweep: the lowest concurrency at which the MoE
    model is no longer better on a metric, after being better at a lower load."""
    closed = {s: pts for (s, c), pts in groups.items() if c}
    moe = {s: p for s, p in closed.items() if p and p[0].get("architecture") == "moe"}
    dense = {s: p for s, p in closed.items() if p and p[0].get("architecture") == "dense"}
    rows = []
    for ms, mp in moe.items():
        for ds, dp in dense.items():
            by_load = {x["load_value"]: x for x in dp}
            common = [(x, by_load[x["load_value"]]) for x in mp if x["load_value"] in by_load]
            for key, label, higher in ADVANTAGE_METRICS:
                pairs = [(m["load_value"], m.get(key), d.get(key)) for m, d in common
                         if m.get(key) is not None and d.get(key) is not None]
                if not pairs:
                    rows.append([ms, ds, label, "not measured", "—"])
                    continue
                better = [(load, (mv > dv) if higher else (mv < dv)) for load, mv, dv in pairs]
                if not better[0][1]:
                    verdict = f"no advantage at the lowest load ({better[0][0]:g})"
                else:
                    gone = next((load for load, b in better if not b), None)
                    verdict = f"vanishes at {gone:g} users" if gone is not None else "not reached"
                ratios = ", ".join(f"{load:g}: {mv / dv:.2f}" for load, mv, dv in pairs if dv)
                rows.append([ms, ds, label, verdict, ratios])
    return rows


def markdown(benches: list[dict]) -> str:
    groups = group(benches)
    out = ["## Serving under load", "",
           "One row per load point (benchmarks/test_serving.py). Latencies in ms at p50/p99 over the point's "
           "requests; tokens/s per GPU and per user; goodput at the gated SLO; J/token over the steady-state window.", ""]
    head = ["model", "load", "n", "failed", "req/s", "tokens/s", "tokens/s/user", "TTFT p50/p99", "TPOT p50/p99",
            "E2E p50/p99", "goodput (SLO)", "J/token", "KV peak", "experts/step"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (series, _), pts in groups.items():
        for x in pts:
            slo = (x.get("slo") or {}).get("name", "")
            kv = (f"{x['kv_blocks_peak_used']}/{x['kv_blocks_total']}" if x.get("kv_blocks_total") else "—")
            energy = _f(x.get("j_per_output_token")) if x.get("j_per_output_token") is not None else "—"
            out.append("| " + " | ".join([
                series, x["load_point"], str(x.get("requests")), str(x.get("failed_requests")),
                _f(x.get("request_throughput_per_s")), _f(x.get("output_tokens_per_s")),
                _f(x.get("output_tokens_per_s_per_user")),
                f"{_f(x.get('req_ttft_ms_p50'))} / {_f(x.get('req_ttft_ms_p99'))}",
                f"{_f(x.get('req_tpot_ms_p50'))} / {_f(x.get('req_tpot_ms_p99'))}",
                f"{_f(x.get('req_e2e_ms_p50'))} / {_f(x.get('req_e2e_ms_p99'))}",
                f"{_f(x.get('goodput_req_per_s'))} ({slo})", energy, kv, _f(x.get("distinct_experts_at_load"), ".3g")]) + " |")
    reasons = sorted({x.get("energy_unavailable") for pts in groups.values() for x in pts if x.get("energy_unavailable")})
    if reasons:
        out += ["", "Energy unavailable: " + "; ".join(reasons)]
    out += ["", "### Knees", "", f"Rule: {RULE}.", "", "| series | sweep | knee |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in knees(groups)]
    out += ["", "### Where the MoE model's advantage vanishes", "",
            "Closed-loop sweeps, loads both models ran; ratio = MoE / dense per load.", "",
            "| MoE | dense | metric | advantage | ratio by users |", "|---|---|---|---|---|"]
    rows = advantage_table(groups)
    out += ["| " + " | ".join(r) + " |" for r in rows] or ["| — | — | — | no MoE and dense pair in this run | — |"]
    out += ["", "![Pareto](serving_pareto.png)", "", "![Latency vs load](serving_latency_vs_load.png)", "",
            "![Goodput vs rate](serving_goodput_vs_rate.png)", "", "![J per token vs load](serving_j_per_token_vs_load.png)"]
    return "\n".join(out) + "\n"


def write_plots(benches: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    groups = group(benches)
    names = sorted({s for s, _ in groups})
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(names)}
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        written.append(out / name)

    closed = {s: pts for (s, c), pts in groups.items() if c}
    opened = {s: pts for (s, c), pts in groups.items() if not c}

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for s, pts in closed.items():
        xy = [(x.get("output_tokens_per_s_per_user"), x.get("output_tokens_per_s"), x["load_point"]) for x in pts]
        xy = [p for p in xy if p[0] is not None and p[1] is not None]
        if xy:
            ax.plot([p[0] for p in xy], [p[1] for p in xy], "o-", color=colors[s], label=s)
            for px, py, lab in xy:
                ax.annotate(lab.removeprefix("cc"), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("tokens/s per user (median 1000 / TPOT)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.set_title("Throughput vs interactivity (labels: concurrent users)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8) if closed else ax.text(0.5, 0.5, "no closed-loop points", ha="center", transform=ax.transAxes)
    save(fig, "serving_pareto.png")

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (key, label) in zip(axes, (("req_ttft_ms", "TTFT (ms)"), ("req_tpot_ms", "TPOT (ms/token)"),
                                       ("req_e2e_ms", "E2E (ms)"))):
        for s, pts in closed.items():
            xs = [x["load_value"] for x in pts]
            p50, p90, p99 = ([x.get(f"{key}_p{q}") for x in pts] for q in (50, 90, 99))
            if any(v is None for v in p50 + p90 + p99):
                continue
            ax.plot(xs, p50, "o-", color=colors[s], label=f"{s} p50")
            ax.fill_between(xs, p50, p90, color=colors[s], alpha=0.2)
            ax.plot(xs, p99, "--", color=colors[s], alpha=0.8, label=f"{s} p99")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent users")
        ax.set_ylabel(label)
        ax.set_title(f"{label}: p50, p50-p90 band, p99 dashed")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    save(fig, "serving_latency_vs_load.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s, pts in opened.items():
        xs = [x["load_value"] for x in pts]
        ax.plot(xs, [x.get("goodput_req_per_s") or 0 for x in pts], "o-", color=colors[s], label=f"{s} goodput")
        ax.plot(xs, [x.get("request_throughput_per_s") or 0 for x in pts], ":", color=colors[s], label=f"{s} throughput")
    if opened:
        top = max(x["load_value"] for pts in opened.values() for x in pts)
        ax.plot([0, top], [0, top], color="grey", lw=0.8, label="offered rate")
        slo = next(iter(opened.values()))[0].get("slo", {}).get("name", "")
        ax.set_title(f"Goodput vs offered rate (SLO {slo})")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no open-loop (--moeperf-rate) points", ha="center", transform=ax.transAxes)
        ax.set_title("Goodput vs offered rate")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("requests/s")
    ax.grid(alpha=0.3)
    save(fig, "serving_goodput_vs_rate.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = False
    for s, pts in closed.items():
        xy = [(x["load_value"], x.get("j_per_output_token")) for x in pts if x.get("j_per_output_token") is not None]
        if xy:
            drawn = True
            ax.plot([p[0] for p in xy], [p[1] for p in xy], "o-", color=colors[s], label=s)
    if drawn:
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
    else:
        why = sorted({x.get("energy_unavailable") or "" for pts in groups.values() for x in pts})
        ax.text(0.5, 0.5, "energy unavailable:\n" + "\n".join(w for w in why if w)[:200], ha="center", va="center",
                transform=ax.transAxes, fontsize=8, wrap=True)
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("J per output token (steady state)")
    ax.set_title("Energy per output token vs load")
    ax.grid(alpha=0.3)
    save(fig, "serving_j_per_token_vs_load.png")
    return written
