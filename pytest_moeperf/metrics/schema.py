"""The metrics the suite writes into pytest-benchmark's ``extra_info``: name, unit, direction.

One table serves the gate (which direction is a regression, which samples to test),
the report (headers with units) and the docs. Pure data: no heavy imports.

Every benchmark's ``extra_info`` holds the scalar keys below (null where the device
cannot measure them) and ``samples``: a dict of per-round (or per-energy-window) lists,
keyed by the metric they are samples of, so a comparison can test distributions
rather than one summary number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["lower", "higher"]
Kind = Literal["latency", "throughput", "memory", "energy", "efficiency"]

SCHEMA_VERSION = 1


# Default gate thresholds (percent), sized to the noise measured on the H200 (see docs/gate.md):
# two runs of the same code (static backend, same machine, separate processes) differed by 5.8%
# in TPOT with a within-run spread of only ~1.5%, so the practical threshold for latency and
# throughput sits above that run-to-run drift (7%); a 10% decode slowdown still clears it.
# Energy windows scatter 5-12% -> 8%. Memory: the percent part of the memory tolerance.
# A metric's own ``threshold_pct`` (tails of ~10 rounds, energy-derived ratios) overrides its kind's.
THRESHOLD_BY_KIND_PCT: dict[str, float] = {
    "latency": 7.0, "throughput": 7.0, "energy": 8.0, "efficiency": 7.0, "memory": 2.0,
}
# Memory may grow by its percent or by this many bytes, whichever is larger: allocations are
# deterministic, and the floor absorbs allocator rounding and library-version noise on small models.
MEMORY_TOLERANCE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Metric:
    """One metric, once: the gate, the terminal summary, the report and docs/metrics.md follow from it.

    ``title``/``short``/``fmt``: the report's column header (``title (unit)``; ``short`` where a
    table is narrow) and number format (``".2f"``, ``".1f"``; ``"sig"``: 4 significant digits).
    ``term``: the terminal summary's column (header, scale, format), None where it has none.
    """
    key: str
    unit: str
    direction: Direction  # which way is better
    kind: Kind
    definition: str
    # key in extra_info["samples"] whose list are the per-round/per-window values of this
    # metric (None: a derived or deterministic value with no sample distribution)
    samples: str | None = None
    # "case": the single-request benchmark (benchmarks/test_deployment.py) writes it;
    # "serving": a load point of benchmarks/test_serving.py does (docs/serving.md)
    scope: str = "case"
    threshold: float | None = None  # default gate threshold, percent; None: its kind's
    title: str = ""
    short: str | None = None
    fmt: str = "sig"
    term: tuple[str, float, str] | None = None
    gated: bool = True  # False: compared and reported, never a FAIL

    @property
    def threshold_pct(self) -> float:
        return THRESHOLD_BY_KIND_PCT[self.kind] if self.threshold is None else self.threshold

    @property
    def header(self) -> str:
        return f"{self.title or self.key} ({self.unit})"


METRICS: tuple[Metric, ...] = (
    Metric("ttft_ms", "ms", "lower", "latency",
           "time to first token: generate() call to the first new token on the host, device synchronized; "
           "prefill included; median over rounds", "ttft_ms",
           title="TTFT", fmt=".2f", term=("TTFT ms", 1.0, "{:.1f}")),
    Metric("ttft_ms_p95", "ms", "lower", "latency",
           "95th percentile of per-round TTFT (numpy 'linear' method, n = rounds)",
           threshold=10.0, title="TTFT p95", fmt=".2f"),  # tails of ~10 rounds are nearly the max
    Metric("tpot_ms", "ms/token", "lower", "latency",
           "time per output token = (E2E - TTFT) / (n - 1); median over rounds", "tpot_ms",
           title="TPOT", fmt=".2f", term=("TPOT ms/tok", 1.0, "{:.2f}")),
    Metric("itl_ms_p50", "ms", "lower", "latency",
           "median of all inter-token gaps of all rounds (first token excluded)", "itl_ms_p50",
           title="ITL p50", fmt=".2f"),
    Metric("itl_ms_p95", "ms", "lower", "latency",
           "95th percentile of all inter-token gaps of all rounds (numpy 'linear')",
           threshold=10.0, title="ITL p95", fmt=".2f"),
    Metric("e2e_ms_p50", "ms", "lower", "latency",
           "median end-to-end generate() time over rounds", "e2e_ms",
           title="E2E p50", fmt=".2f", term=("E2E p50 ms", 1.0, "{:.1f}")),
    Metric("e2e_ms_p95", "ms", "lower", "latency",
           "95th percentile of end-to-end time over rounds (numpy 'linear'; with 10 rounds this is "
           "0.55 of the way from the 9th to the 10th value)",
           threshold=10.0, title="E2E p95", fmt=".2f", term=("E2E p95 ms", 1.0, "{:.1f}")),
    Metric("decode_tokens_per_s", "tokens/s", "higher", "throughput",
           "decode throughput = batch * (n - 1) / (E2E - TTFT); median over rounds", "decode_tokens_per_s",
           title="Decode throughput", short="Decode (tokens/s)", fmt=".2f", term=("decode tok/s", 1.0, "{:.1f}")),
    Metric("e2e_tokens_per_s", "tokens/s", "higher", "throughput",
           "batch * n / E2E, prefill included (the paper's 'TPOT'); median over rounds", "e2e_tokens_per_s",
           title="E2E throughput incl. prefill", short="E2E (tokens/s)", fmt=".2f"),
    Metric("weights_bytes", "bytes", "lower", "memory",
           "device memory allocated after the model is loaded, before any input", title="Weights"),
    Metric("peak_allocated_bytes", "bytes", "lower", "memory",
           "torch.cuda.max_memory_allocated() over the measured rounds (reset after warm-up), "
           "read with the KV cache still alive", title="Peak allocated"),
    Metric("peak_reserved_bytes", "bytes", "lower", "memory",
           "torch.cuda.max_memory_reserved() over the measured rounds", title="Peak reserved"),
    Metric("peak_rss_bytes", "bytes", "lower", "memory",
           "peak resident set size during the measured rounds (VmHWM, reset per case on Linux)",
           # host RSS depends on how the process was set up (an xdist worker held 340 MiB more than
           # a plain run of the same case on the H200) and on the driver, not on the code alone
           title="Peak RSS", gated=False),
    Metric("kv_cache_bytes", "bytes", "lower", "memory",
           "analytic bytes of the KV cache the model keeps after the last token, per layer type "
           "(sliding-window layers keep at most window-1 tokens)", title="KV cache, analytic",
           term=("KV MB", 1e-6, "{:.2f}")),
    # gated too: the analytic figure follows the config alone, so only this one sees a library change
    # that makes the real cache bigger
    Metric("kv_cache_measured_bytes", "bytes", "lower", "memory",
           "bytes of the keys and values tensors the cache returned by the last measured round holds "
           "(sum of numel x element size over layers): the check on kv_cache_bytes", title="KV cache, measured"),
    Metric("energy_j", "J", "lower", "energy",
           "gross board energy per round (NVML total-energy counter over windows of consecutive "
           "rounds, divided by the rounds in the window); median over windows", "energy_j",
           title="Energy per generate()", short="Energy (J)", fmt=".2f"),
    Metric("tokens_per_j", "tokens/J", "higher", "energy",
           "generated tokens / gross energy; median over windows", "tokens_per_j",
           title="Tokens per joule", short="tokens/J"),
    Metric("j_per_1k_tokens", "J/1k tokens", "lower", "energy",
           "gross energy per 1000 generated tokens; median over windows", "j_per_1k_tokens",
           title="Energy per 1k tokens", short="J/1k tokens", fmt=".1f", term=("J/1k tok", 1.0, "{:.1f}")),
    Metric("ape_tpot", "tokens/s/B", "higher", "efficiency",
           "decode_tokens_per_s / active parameters in billions", title="APE decode"),
    Metric("ape_inv_ttft", "1/s/B", "higher", "efficiency",
           "(1000 / ttft_ms) / active parameters in billions", title="APE-1/TTFT"),
    Metric("ape_energy", "tokens/J/B", "higher", "efficiency",
           "tokens_per_j / active parameters in billions",
           threshold=8.0, title="APE-energy"),  # follows energy
    Metric("tokens_per_s_per_gb", "tokens/s/GB", "higher", "efficiency",
           "decode_tokens_per_s / peak memory in decimal GB (allocator peak on GPU, RSS on CPU)",
           title="Decode per peak GB"),
)


def _serving_pcts(name: str, unit: str, what: str, samples: str | None, title: str) -> tuple[Metric, ...]:
    return tuple(Metric(f"req_{name}_p{q}", unit, "lower", "latency",
                        f"{q}th percentile over the load point's requests of {what} (numpy 'linear'; n in req_{name}_n)",
                        samples if q == 50 else None, "serving", title=f"{title} p{q}", fmt=".2f") for q in (50, 90, 99))


# Serving metrics: one load point of benchmarks/test_serving.py; per-request samples for the gate's
# rank test; formulas in pytest_moeperf/serving/metrics.py and docs/serving.md.
SERVING_METRICS: tuple[Metric, ...] = (
    *_serving_pcts("ttft_ms", "ms", "TTFT = first chunk's arrival - send time", "req_ttft_ms", "Request TTFT"),
    *_serving_pcts("tpot_ms", "ms/token", "TPOT = (E2E - TTFT) / (N - 1), requests with N >= 2", "req_tpot_ms", "Request TPOT"),
    *_serving_pcts("itl_ms", "ms", "inter-token latency: gaps between a request's consecutive chunks, all requests pooled",
                   None, "Request ITL"),
    *_serving_pcts("e2e_ms", "ms", "E2E = end of stream - send time", "req_e2e_ms", "Request E2E"),
    *_serving_pcts("queue_wait_ms", "ms", "queue wait = the engine's admission stamp - send time", "req_queue_wait_ms", "Queue wait"),
    Metric("request_throughput_per_s", "requests/s", "higher", "throughput",
           "successful requests / makespan (run start to the last request's end)", None, "serving",
           title="Request throughput", fmt=".2f"),
    Metric("output_tokens_per_s", "tokens/s", "higher", "throughput",
           "output tokens of successful requests / makespan (per GPU: the engine runs on one)", None, "serving",
           title="Output throughput", fmt=".2f"),
    Metric("output_tokens_per_s_per_user", "tokens/s", "higher", "throughput",
           "median over requests of (N - 1) / (E2E - TTFT) = 1000 / TPOT", "req_decode_tokens_per_s", "serving",
           title="Output throughput per user", fmt=".2f"),
    Metric("goodput_req_per_s", "requests/s", "higher", "throughput",
           "requests that succeeded and met every limit of the gated SLO (first --moeperf-slo) / makespan", None, "serving",
           title="Goodput", fmt=".2f"),
    Metric("slo_attainment", "fraction", "higher", "throughput",
           "requests meeting the gated SLO / all requests sent (failed ones count as missed)", None, "serving",
           title="SLO attainment", fmt=".3f"),
    Metric("j_per_output_token", "J/token", "lower", "energy",
           "gross board energy over the steady-state window (first request's end to last request's send, "
           ">= 5 s) / output tokens emitted in it", None, "serving", title="Energy per output token"),
    Metric("avg_power_w", "W", "lower", "energy",
           "gross board energy over the steady-state window / its length", None, "serving",
           title="Average power", fmt=".1f"),
)

METRICS = METRICS + SERVING_METRICS
CASE_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.scope == "case")
METRICS_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}

# Descriptive keys every benchmark carries besides the metrics.
DESCRIPTIVE_KEYS: tuple[str, ...] = (
    "model", "architecture", "weights", "dtype", "backend", "device_name", "context_tokens",
    "new_tokens", "batch_size", "decoding", "params_total", "params_active", "rounds",
    "energy_unavailable", "samples",
)

REQUIRED_KEYS: tuple[str, ...] = DESCRIPTIVE_KEYS + tuple(m.key for m in CASE_METRICS)

# What every serving load point's extra_info carries besides its metrics.
SERVING_DESCRIPTIVE_KEYS: tuple[str, ...] = (
    "model", "architecture", "weights", "dtype", "backend", "device_name", "load_point", "load_mode", "load_value",
    "input_len", "output_len", "requests", "requests_ok", "failed_requests", "duration_s", "slo", "slo_by_name",
    "steady_window_s", "mean_in_flight", "energy_unavailable", "kv_blocks_total", "kv_blocks_peak_used",
    "peak_allocated_bytes", "peak_rss_bytes", "engine", "routing_vs_batch", "clock_delivery_ms_p50", "samples",
)
SERVING_REQUIRED_KEYS: tuple[str, ...] = SERVING_DESCRIPTIVE_KEYS + tuple(m.key for m in SERVING_METRICS)

DOCS_BEGIN = "<!-- metric registry: generated by `python -m pytest_moeperf.metrics.schema`, do not edit -->"
DOCS_END = "<!-- end of metric registry -->"


def registry_markdown() -> str:
    """docs/metrics.md's registry table: one row per metric, from METRICS (tests compare the two)."""
    rows = ["| key | unit | better | kind | samples key | default gate threshold | report header |",
            "|---|---|---|---|---|---|---|"]
    for m in METRICS:
        floor = f" or {MEMORY_TOLERANCE_BYTES // 2**20} MiB, whichever larger" if m.kind == "memory" else ""
        thr = f"{m.threshold_pct:g} %{floor}" + ("" if m.gated else " (reported, never FAILs)")
        rows.append(f"| `{m.key}` | {m.unit} | {m.direction} | {m.kind} | {f'`{m.samples}`' if m.samples else '—'} "
                    f"| {thr} | {m.header} |")
    return "\n".join([DOCS_BEGIN, *rows, DOCS_END])


def write_docs(path: str = "docs/metrics.md") -> bool:
    """Replace the registry block of ``path``; True if the file changed."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    start, end = text.index(DOCS_BEGIN), text.index(DOCS_END) + len(DOCS_END)
    new = text[:start] + registry_markdown() + text[end:]
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != text


if __name__ == "__main__":
    print("docs/metrics.md: " + ("registry table rewritten" if write_docs() else "registry table up to date"))
