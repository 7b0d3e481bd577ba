"""The terminal summary: the deployment metrics per case (pytest-benchmark shows only round times)."""

from __future__ import annotations

from pytest_moeperf.metrics.derived import peak_memory_bytes
from pytest_moeperf.metrics.formats import term_cell
from pytest_moeperf.metrics.schema import METRICS_BY_KEY

# Which metrics the summary shows is its own choice; each one's header, scale and format is the
# registry's ``term`` (schema.METRICS). "peak GB" is derived.peak_memory_bytes; the energy CV and
# the round count are descriptive keys, not metrics.
KEYS = ("ttft_ms", "tpot_ms", "decode_tokens_per_s", "e2e_ms_p50", "e2e_ms_p95", "_peak_bytes",
        "kv_cache_bytes", "j_per_1k_tokens")
_EXTRA = {"_peak_bytes": ("peak GB", 1e-9, "{:.2f}")}
COLUMNS = tuple((h, k, sc, f) for k in KEYS for h, sc, f in [_EXTRA.get(k) or METRICS_BY_KEY[k].term]) + (
    ("energy CV", "energy_j_cv", 100.0, "{:.1f}%"), ("n", "rounds", 1.0, "{:.0f}"))  # header, key, scale, format


def _cell(info: dict, key: str, scale: float, fmt: str) -> str:
    if key == "_peak_bytes":
        value = peak_memory_bytes(info.get("peak_allocated_bytes"), info.get("peak_rss_bytes"))
    else:
        value = info.get(key)
    return term_cell(value, scale, fmt)


def render_summary(finished: list, failed: list) -> str:
    headers = ["case"] + [c[0] for c in COLUMNS]
    rows = [[case.case_id] + [_cell(info, *c[1:]) for c in COLUMNS] for case, info in finished]
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    for r in rows:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
    notes = sorted({info.get("energy_unavailable") for _, info in finished if info.get("energy_unavailable")})
    for note in notes:
        lines.append(f"energy unavailable: {note}")
    contaminated = [case.case_id for case, info in finished if info.get("contaminated")]
    if contaminated:
        lines.append(f"WARNING: other processes used the GPU during {', '.join(contaminated)}: figures contaminated")
    throttled = [f"{case.case_id} ({info['throttled_rounds']} rounds)" for case, info in finished
                 if info.get("throttled_rounds")]
    if throttled:
        lines.append(f"WARNING: clock throttling during {', '.join(throttled)}")
    for case, error in failed:
        lines.append(f"FAILED {case.case_id}: {error}")
    lines.append("TPOT = (E2E - TTFT)/(n - 1); percentiles numpy 'linear' over n rounds; GB decimal; "
                 "energy gross board, NVML counter (docs/metrics.md)")
    return "\n".join(lines)
