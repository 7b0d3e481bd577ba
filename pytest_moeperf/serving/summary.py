"""The terminal section "moeperf serving metrics": one line per load point, and each sweep's knee."""

from __future__ import annotations


def _f(v, fmt: str = ".4g") -> str:
    return "—" if v is None else format(v, fmt)


def render_serving_summary(finished: list, failed: list, sweeps: dict) -> str:
    from .sweep import RULE, knee

    head = (f"{'point':44} {'req/s':>7} {'tok/s':>8} {'tok/s/user':>10} {'TTFT p50':>9} {'TPOT p50':>9} "
            f"{'E2E p99':>9} {'goodput':>8} {'J/tok':>8} {'fail':>4}")
    lines = [head]
    for point, x in finished:
        lines.append(f"{point.point_id:44} {_f(x.get('request_throughput_per_s')):>7} {_f(x.get('output_tokens_per_s')):>8} "
                     f"{_f(x.get('output_tokens_per_s_per_user')):>10} {_f(x.get('req_ttft_ms_p50')):>9} "
                     f"{_f(x.get('req_tpot_ms_p50')):>9} {_f(x.get('req_e2e_ms_p99')):>9} "
                     f"{_f(x.get('goodput_req_per_s')):>8} {_f(x.get('j_per_output_token')):>8} {x.get('failed_requests', 0):>4}")
    for point, error in failed:
        lines.append(f"{point.point_id:44} FAILED: {error}")
    lines.append("latencies in ms; goodput in requests/s at the first --moeperf-slo; J/tok over the steady-state window")
    for family, pts in sweeps.items():
        k = knee(pts)
        what = "concurrency" if family[-1] else "rate"
        name = f"{family[0]} {what} sweep"
        lines.append(f"{name}: knee at {k.load:g} ({_f(k.output_tokens_per_s)} tokens/s)" if k else
                     f"{name}: knee not reached over {', '.join(f'{p.load:g}' for p in sorted(pts, key=lambda p: p.load))}")
    lines.append(f"saturation rule: {RULE}")
    return "\n".join(lines)
