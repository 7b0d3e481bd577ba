"""The serving part of ``python -m pytest_moeperf report``: plots and tables of load points.

Tables: every load point and each sweep's knee (sweep.py's rule), then the plots serving_plots.py
drew; where the MoE model's advantage over a dense one vanishes is report/crossover.py's section,
which follows. Reads only extra_info written by serving/runner.py; pure.
"""

from __future__ import annotations

from collections import defaultdict

from pytest_moeperf.metrics.formats import DASH, formatter, sig
from pytest_moeperf.metrics.schema import METRICS_BY_KEY, key_header, pair_header
from pytest_moeperf.report.report_format import table
from pytest_moeperf.results.documents import SERVING, benchmark_kind
from pytest_moeperf.serving.sweep import RULE, SweepPoint, knee

def is_serving(bench: dict) -> bool:
    return benchmark_kind(bench) == SERVING


def series_of(x: dict) -> str:
    cg = x.get("cuda_graphs") or "auto"
    return x["model"] + ("" if cg == "auto" else f" (CUDA graphs {cg})")


def group(benches: list[dict]) -> dict:
    """{(series, closed_loop): [extra_info sorted by load]}"""
    out = defaultdict(list)
    for b in benches:
        x = b["extra_info"]
        out[(series_of(x), x["load_mode"] == "concurrency")].append(x)
    return {k: sorted(v, key=lambda x: x["load_value"]) for k, v in out.items()}


def knees(groups: dict) -> list[tuple[str, str, str]]:
    rows = []
    for (series, closed), pts in groups.items():
        k = knee([SweepPoint(x["load_value"], x.get("output_tokens_per_s"), x.get("req_ttft_ms_p50")) for x in pts])
        what = "users" if closed else "requests/s"
        loads = ", ".join(f"{x['load_value']:g}" for x in pts)
        rows.append((series, f"{'concurrency' if closed else 'rate'} ({what}) over {loads}",
                     f"{k.load:g} ({sig(k.output_tokens_per_s)} tokens/s)" if k else "not reached"))
    return rows


# headers and units from the registry (schema.METRICS, schema.KEYS)
POINT_HEAD = ([key_header(k) for k in ("series", "load_point", "requests", "failed_requests")]
              + [METRICS_BY_KEY[k].header for k in ("request_throughput_per_s", "output_tokens_per_s",
                                                    "output_tokens_per_s_per_user")]
              + [pair_header(k) for k in ("req_ttft_ms", "req_tpot_ms", "req_e2e_ms")]
              + [METRICS_BY_KEY[k].header for k in ("goodput_req_per_s", "j_per_output_token")]
              + [key_header(k) for k in ("kv_blocks_peak_used", "distinct_experts_at_load")])


def _v(x: dict, key: str) -> str:
    """A metric's value in its registry format."""
    return formatter(METRICS_BY_KEY[key].fmt)(x.get(key))


def _pair(x: dict, key: str) -> str:
    return f"{_v(x, key + '_p50')} / {_v(x, key + '_p99')}"


def point_rows(groups: dict) -> list[list[str]]:
    rows = []
    for (series, _), pts in groups.items():
        for x in pts:
            kv = f"{x['kv_blocks_peak_used']}/{x['kv_blocks_total']}" if x.get("kv_blocks_total") else DASH
            rows.append([series, str(x["load_point"]), str(x.get("requests")), str(x.get("failed_requests")),
                         _v(x, "request_throughput_per_s"), _v(x, "output_tokens_per_s"),
                         _v(x, "output_tokens_per_s_per_user"), _pair(x, "req_ttft_ms"), _pair(x, "req_tpot_ms"),
                         _pair(x, "req_e2e_ms"), _v(x, "goodput_req_per_s"), _v(x, "j_per_output_token"),
                         kv, sig(x.get("distinct_experts_at_load"))])
    return rows


TWO_TPOTS = ("**Two TPOTs.** The single-request tables time `model.generate()`, one request at a time with the "
             "case's backend (eager: dynamic cache; static: static cache + torch.compile), per token through "
             "generate()'s own loop (logits processors, stopping criteria, the token clock's hook). The load points "
             "here run transformers' continuous-batching engine: a paged KV cache, its own scheduler and decode step "
             "(on a GPU maybe CUDA graphs), tokens streamed to the harness. Same formula, (E2E − TTFT) / (N − 1), "
             "but another code path: at one user the two TPOTs differ, and only like is compared with like.")


def markdown(benches: list[dict], plots: list[tuple[str, str]] = (), with_cases: bool = False) -> list[str]:
    """The serving section: every load point, the knees, and the plots in ``plots`` ((file, title) of
    those drawn); ``with_cases``: the page also holds single-request
    cases, whose TPOT the section tells apart from its own."""
    groups = group(benches)
    slos = sorted({str((x.get("slo") or {}).get("name")) for pts in groups.values() for x in pts if x.get("slo")})
    out = ["## Serving under load", "",
           "One row per load point (benchmarks/test_serving.py). Latencies at p50 / p99 over the point's requests; "
           "tokens/s per GPU and per user; goodput at the gated SLO (" + (", ".join(slos) or DASH) + "); J/token "
           "over the steady-state window.", ""]
    out += table(POINT_HEAD, point_rows(groups)) + [""]
    if with_cases:
        out += [TWO_TPOTS, ""]
    reasons = sorted({x.get("energy_unavailable") for pts in groups.values() for x in pts if x.get("energy_unavailable")})
    if reasons:
        out += ["Energy unavailable: " + "; ".join(map(str, reasons)), ""]
    out += ["### Knees", "", f"Rule: {RULE}.", ""]
    out += table([key_header(k) for k in ("series", "sweep", "knee")], [list(k) for k in knees(groups)]) + [""]
    for file, title in plots:
        out += [f"![{title}]({file})", ""]
    return out
