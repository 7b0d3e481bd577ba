"""The terminal section "moeperf serving metrics": one line per load point, and each sweep's knee."""

from __future__ import annotations


# the columns, in order: each a registry metric's terminal form (schema: Metric.term = header, scale, format)
TERM_KEYS = ("request_throughput_per_s", "output_tokens_per_s", "output_tokens_per_s_per_user", "req_ttft_ms_p50",
             "req_tpot_ms_p50", "req_e2e_ms_p99", "goodput_req_per_s", "j_per_output_token")


def render_serving_summary(finished: list, failed: list, sweeps: dict) -> str:
    from pytest_moeperf.metrics.formats import term_cell
    from pytest_moeperf.metrics.schema import METRICS_BY_KEY

    from .sweep import RULE, knee

    cols = [(k, *METRICS_BY_KEY[k].term) for k in TERM_KEYS]
    widths = [max(len(h) + 1, 8) for _, h, _, _ in cols]
    lines = [f"{'point':44} " + " ".join(f"{h:>{w}}" for (_, h, _, _), w in zip(cols, widths)) + f" {'fail':>4}"]
    for point, x in finished:
        lines.append(f"{point.point_id:44} " + " ".join(f"{term_cell(x.get(k), sc, fmt):>{w}}"
                                                         for (k, _, sc, fmt), w in zip(cols, widths))
                     + f" {x.get('failed_requests', 0):>4}")
    from .harness_speed import lag_line

    lines += [line for point, x in finished if (line := lag_line(point.point_id, x))]
    for point, error in failed:
        lines.append(f"{point.point_id:44} FAILED: {error}")
    lines.append("latencies in ms; goodput in requests/s at the first --moeperf-slo; J/tok over the steady-state window")
    for family, pts in sweeps.items():
        k = knee(pts)
        what = "concurrency" if family[-1] else "rate"
        name = f"{family[0]} {what} sweep"
        tokens = METRICS_BY_KEY["output_tokens_per_s"]
        lines.append(f"{name}: knee at {k.load:g} ({term_cell(k.output_tokens_per_s, *tokens.term[1:])} {tokens.unit})" if k else
                     f"{name}: knee not reached over {', '.join(f'{p.load:g}' for p in sorted(pts, key=lambda p: p.load))}")
    lines.append(f"saturation rule: {RULE}")
    return "\n".join(lines)
