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
# The A/B command (pytest_moeperf/ab, docs/gate.md "A/B on one GPU"): base and head measured interleaved on one
# GPU in one job and decided on paired run-to-run ratios, so the machine's drift cancels and the threshold is
# the smallest change worth a verdict, not a margin over drift: a change whose whole interval lies beyond it
# FAILs, one whose whole interval lies inside +-it PASSes ("same").
AB_THRESHOLD_BY_KIND_PCT: dict[str, float] = {
    "latency": 2.0, "throughput": 2.0, "energy": 3.0, "efficiency": 2.0, "memory": 2.0,
}
# What `ab` decides on when not told (--metrics): a case's decode and prefill headline, a load point's throughput
# (whichever a run holds).
AB_DEFAULT_METRICS: tuple[str, ...] = ("tpot_ms", "itl_ms_p50", "ttft_ms", "e2e_ms_p50", "output_tokens_per_s")

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
    paper: str | None = None  # the paper's own name for the figure compared with this one (a paper baseline)

    @property
    def threshold_pct(self) -> float:
        return THRESHOLD_BY_KIND_PCT[self.kind] if self.threshold is None else self.threshold

    @property
    def ab_threshold_pct(self) -> float:
        return AB_THRESHOLD_BY_KIND_PCT[self.kind]

    @property
    def header(self) -> str:
        return self.head()

    def head(self, unit: str | None = None, short: bool = False, **names: str) -> str:
        """A view's header: ``title (unit)``. ``unit``: the scale a view prints in (GB for bytes, from
        formats.bytes_unit); ``short``: the narrow form where there is one; ``names`` fill a title's
        placeholders (``{ref}``: what a change or difference is against)."""
        if short and self.short:
            return self.short.format(unit=unit or self.unit, **names)
        return f"{(self.title or self.key).format(**names)} ({unit or self.unit})"


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
           title="E2E throughput incl. prefill", short="E2E (tokens/s)", fmt=".2f", paper="TPOT"),
    Metric("weights_bytes", "bytes", "lower", "memory",
           "device memory allocated after the model is loaded, before any input", title="Weights", fmt=".2f"),
    Metric("peak_allocated_bytes", "bytes", "lower", "memory",
           "torch.cuda.max_memory_allocated() over the measured rounds (reset after warm-up), "
           "read with the KV cache still alive", title="Peak allocated", fmt=".2f"),
    Metric("peak_reserved_bytes", "bytes", "lower", "memory",
           "torch.cuda.max_memory_reserved() over the measured rounds", title="Peak reserved", fmt=".2f"),
    Metric("peak_rss_bytes", "bytes", "lower", "memory",
           "peak resident set size during the measured rounds (VmHWM, reset per case on Linux)",
           # host RSS depends on how the process was set up (an xdist worker held 340 MiB more than
           # a plain run of the same case on the H200) and on the driver, not on the code alone
           title="Peak RSS", fmt=".2f", gated=False),
    Metric("kv_cache_bytes", "bytes", "lower", "memory",
           "analytic bytes of the KV cache the model keeps after the last token, per layer type "
           "(sliding-window layers keep at most window-1 tokens)", title="KV cache, analytic",
           short="KV cache ({unit})", fmt=".2f",
           term=("KV MB", 1e-6, "{:.2f}")),
    # gated too: the analytic figure follows the config alone, so only this one sees a library change
    # that makes the real cache bigger
    Metric("kv_cache_measured_bytes", "bytes", "lower", "memory",
           "bytes of the keys and values tensors the cache returned by the last measured round holds "
           "(sum of numel x element size over layers): the check on kv_cache_bytes", title="KV cache, measured",
           fmt=".2f"),
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


def _serving_pcts(name: str, unit: str, what: str, samples: str | None, title: str,
                  term: dict[int, str] | None = None) -> tuple[Metric, ...]:
    return tuple(Metric(f"req_{name}_p{q}", unit, "lower", "latency",
                        f"{q}th percentile over the load point's requests of {what} (numpy 'linear'; n in req_{name}_n)",
                        samples if q == 50 else None, "serving", title=f"{title} p{q}", fmt="sig",
                        term=(term[q], 1.0, "{:.4g}") if term and q in term else None) for q in (50, 90, 99))


# Serving metrics: one load point of benchmarks/test_serving.py; per-request samples for the gate's
# rank test; formulas in pytest_moeperf/serving/metrics.py and docs/serving.md. Shown with 4 significant
# digits (fmt "sig"): rates span 0.2 to thousands per second across loads.
SERVING_METRICS: tuple[Metric, ...] = (
    *_serving_pcts("ttft_ms", "ms", "TTFT = first chunk's arrival - send time", "req_ttft_ms", "Request TTFT",
                   {50: "TTFT p50"}),
    *_serving_pcts("tpot_ms", "ms/token", "TPOT = (E2E - TTFT) / (N - 1), requests with N >= 2", "req_tpot_ms", "Request TPOT",
                   {50: "TPOT p50"}),
    *_serving_pcts("itl_ms", "ms", "inter-token latency: gaps between a request's consecutive chunks, all requests pooled",
                   None, "Request ITL"),
    *_serving_pcts("e2e_ms", "ms", "E2E = last content chunk's arrival - send time", "req_e2e_ms", "Request E2E",
                   {99: "E2E p99"}),
    *_serving_pcts("queue_wait_ms", "ms", "queue wait = the engine's admission stamp - send time, successful requests, not clipped",
                   "req_queue_wait_ms", "Queue wait"),
    Metric("request_throughput_per_s", "requests/s", "higher", "throughput",
           "successful requests / makespan (run start to the last request's end; a request stopped at the "
           "time limit or never sent ends at the stop)", None, "serving",
           title="Request throughput", fmt="sig", term=("req/s", 1.0, "{:.4g}")),
    Metric("output_tokens_per_s", "tokens/s", "higher", "throughput",
           "output tokens of successful requests / makespan (per GPU: the engine runs on one)", None, "serving",
           title="Output throughput", fmt="sig", term=("tok/s", 1.0, "{:.4g}")),
    Metric("output_tokens_per_s_per_user", "tokens/s", "higher", "throughput",
           "median over requests with N >= 2 of each one's (N - 1) / (E2E - TTFT) (AIPerf's per-user rate); "
           "1000 / median TPOT only when that count is odd", "req_decode_tokens_per_s", "serving",
           title="Output throughput per user", fmt="sig", term=("tok/s/user", 1.0, "{:.4g}")),
    Metric("goodput_req_per_s", "requests/s", "higher", "throughput",
           "requests that succeeded and met every limit of the gated SLO (first --moeperf-slo) / makespan; a "
           "1-token request has no TPOT and misses a TPOT limit (AIPerf's rule; vLLM counts it)", None, "serving",
           title="Goodput", fmt="sig", term=("goodput", 1.0, "{:.4g}")),
    Metric("slo_attainment", "fraction", "higher", "throughput",
           "requests meeting the gated SLO / all requests sent (failed ones count as missed)", None, "serving",
           title="SLO attainment", fmt=".3f"),
    Metric("j_per_output_token", "J/token", "lower", "energy",
           "gross board energy over the steady-state window (first request's end to last request's send, "
           ">= 5 s) / output tokens emitted in it", None, "serving", title="Energy per output token",
           term=("J/tok", 1.0, "{:.4g}")),
    Metric("avg_power_w", "W", "lower", "energy",
           "gross board energy over the steady-state window / its length", None, "serving",
           title="Average power", fmt=".1f"),
)

METRICS = METRICS + SERVING_METRICS

# Figures the report derives from the metrics above (never in extra_info, never gated): their headers,
# units and formats, so no view writes its own. ``{ref}`` in a title: what the figure is against.
REPORT_METRICS: tuple[Metric, ...] = tuple(Metric(*args, scope="report", gated=False, **kw) for args, kw in (
    (("peak_memory_bytes", "bytes", "lower", "memory", "peak_allocated_bytes where measured (a GPU), else "
      "peak_rss_bytes (the CPU): metrics/derived.peak_memory_bytes"), dict(title="Peak memory", fmt=".2f")),
    (("memory_vs_ref_bytes", "bytes", "lower", "memory", "this model's peak memory - the MoE model's ({ref}), "
      "Table 5"), dict(title="Δ vs {ref}", fmt=".2f")),
    (("memory_less_for_ref_pct", "%", "higher", "memory", "(this model's peak memory - the MoE model's) / this "
      "model's x 100, the paper's Table 5"), dict(title="% less for {ref} vs this model", fmt=".2f")),
    (("peak_over_weights_bytes", "bytes", "lower", "memory", "peak_allocated_bytes - weights_bytes: the KV "
      "cache and the transients of a round"), dict(title="Peak − weights", fmt=".2f")),
    (("kv_measured_minus_analytic_bytes", "bytes", "lower", "memory", "kv_cache_measured_bytes - "
      "kv_cache_bytes: 0 where the analytic formula holds"), dict(title="KV measured − analytic", fmt=".0f")),
    (("params_active_b", "B", "lower", "efficiency", "active parameters in billions"),
     dict(title="Active params")),
    (("ape_e2e", "tokens/s/B", "higher", "efficiency", "e2e_tokens_per_s / active parameters in billions "
      "(the paper's APE-TPOT)"), dict(title="APE E2E", paper="APE-TPOT")),
    (("e2e_tokens_per_s_per_gb", "tokens/s/GB", "higher", "efficiency", "e2e_tokens_per_s / peak memory in "
      "decimal GB (the paper's TPOT/GB)"), dict(title="E2E per peak GB", paper="TPOT/GB")),
    (("decode_at_context_tokens_per_s", "tokens/s", "higher", "throughput", "decode_tokens_per_s at the "
      "smallest or largest context of Table 4 ({ref})"), dict(title="Decode @{ref}", fmt=".2f")),
    (("e2e_at_context_tokens_per_s", "tokens/s", "higher", "throughput", "e2e_tokens_per_s at the smallest "
      "or largest context of Table 4 ({ref})"), dict(title="E2E @{ref}", fmt=".2f")),
    # the per-step model of a serving load point (serving/step_table.py; the report's crossover section)
    (("step_attention_shared_bytes", "bytes", "lower", "memory", "attention and shared weights one decode step "
      "reads, from the model's config"), dict(title="Attention + shared", fmt=".3g")),
    (("step_experts_bytes", "bytes", "lower", "memory", "the distinct experts' weights one decode step reads "
      "(experts per MoE layer by the independence formula)"), dict(title="Experts", fmt=".3g")),
    (("step_kv_bytes", "bytes", "lower", "memory", "the batch's KV cache at the mean decode context, "
      "sliding-window layers capped at their window"), dict(title="KV cache", fmt=".3g")),
    (("step_bytes", "bytes", "lower", "memory", "all a decode step reads: the three terms above"),
     dict(title="Step total", fmt=".3g")),
    (("step_floor_ms", "ms/step", "lower", "latency", "step_bytes (measured expert count) / the board's memory "
      "bandwidth"), dict(title="Floor", fmt=".3g")),
    (("roofline_fraction", "fraction", "higher", "efficiency", "step_floor_ms / the measured req_tpot_ms_p50: "
      "the roofline fraction under load"), dict(title="Roofline", fmt=".2f")),
    (("energy_floor_j_per_token", "J/token", "lower", "energy", "idle power x step_floor_ms per sequence: a "
      "board draws at least its idle power for at least the floor time"), dict(title="Energy floor", fmt=".3g")),
    (("energy_floor_fraction", "fraction", "higher", "efficiency", "energy_floor_j_per_token / the measured "
      "j_per_output_token"), dict(title="Energy floor / measured", fmt=".2f")),
    (("decode_change_pct", "%", "higher", "throughput", "(decode_tokens_per_s - the reference's) / the "
      "reference's x 100; the reference ({ref}) is named in the header"), dict(title="Δ decode vs {ref}", fmt="pct")),
    (("e2e_change_pct", "%", "higher", "throughput", "(e2e_tokens_per_s - the reference's) / the reference's "
      "x 100; the reference ({ref}) is named in the header"), dict(title="Δ E2E vs {ref}", fmt="pct")),
))
VIEW_METRICS_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS + REPORT_METRICS}


def pair_header(key: str) -> str:
    """'Request TTFT p50 / p99 (ms)': a column of a serving metric's p50 and p99, from the p50's entry."""
    m = VIEW_METRICS_BY_KEY[f"{key}_p50"]
    return f"{m.title} / p99 ({m.unit})"


@dataclass(frozen=True)
class Key:
    """A descriptive key a view shows or a CSV file holds: its unit ('' when it has none) and the title of
    its column in a view (``title (unit)``; the title alone where ``bare`` or the key has no unit)."""
    key: str
    unit: str = ""
    title: str = ""
    bare: bool = False

    @property
    def header(self) -> str:
        title = self.title or self.key
        return title if self.bare or not self.unit else f"{title} ({self.unit})"


# Units and headers of the descriptive keys (extra_info's, a serving record's, a view's own columns).
KEYS: tuple[Key, ...] = tuple(Key(*k) for k in (
    ("case", "", "Case"), ("model", "", "Model"), ("series", "", "Model (engine)"), ("status", "", "Status"),
    ("architecture", ""), ("weights", ""), ("dtype", "", "Precision"), ("backend", "", "Backend"),
    ("decoding", "", "Decoding"), ("device_name", ""), ("failed", ""), ("error", ""), ("workload_seed", ""),
    ("context_tokens", "tokens", "Context"), ("new_tokens", "tokens", "New tokens", True),
    ("batch_size", "sequences"), ("params_total", "parameters"), ("params_active", "parameters"), ("rounds", "rounds"),
    ("load_point", "", "Load"), ("sweep", "", "Sweep"), ("knee", "", "Knee"), ("best_goodput", "", "Best goodput (SLO)"), ("load_mode", ""), ("load_value", "users or requests/s"),
    ("requests", "requests", "Requests", True), ("requests_ok", "requests"),
    ("failed_requests", "requests", "Failed", True), ("requests_planned", "requests"), ("duration_s", "s"),
    ("input_len", "tokens"), ("output_len", "tokens"), ("steady_window_s", "s"), ("energy_window_s", "s"),
    ("mean_in_flight", "requests"), ("kv_blocks_total", "blocks"),
    ("kv_blocks_peak_used", "blocks", "KV blocks peak / total", True), ("kv_block_tokens", "tokens"),
    ("kv_used_fraction_peak", "fraction"), ("distinct_experts_at_load", "experts", "Experts per step", True),
    ("clock_delivery_ms_p50", "ms"), ("clock_delivery_ms_p99", "ms"), ("clock_delivery_ms_min", "ms"),
    ("clock_delivery_n", "chunks"), ("offered_rate_per_s", "requests/s", "Offered rate"),
    ("concurrent_users", "users", "Concurrent users", True), ("input_tokens_total", "tokens"),
    ("output_tokens_total", "tokens"), ("steady_energy_j", "J"), ("steady_output_tokens_per_s", "tokens/s"),
    ("req_ttft_ms_n", "requests"), ("req_tpot_ms_n", "requests"), ("req_e2e_ms_n", "requests"),
    ("req_queue_wait_ms_n", "requests"), ("req_itl_ms_n", "gaps"),
    # the crossover section's own columns (report/crossover.py)
    ("step_batch", "sequences", "B", True), ("experts_per_layer", "experts", "Experts/layer formula / measured", True),
    ("moe", "", "MoE"), ("dense", "", "Dense"), ("metric", "", "Metric"),
    ("ratio_by_users", "", "MoE/dense by users [95 %]"), ("measured_crossing", "users", "Measured crossing", True),
    ("model_crossing", "users", "Per-step model", True), ("what_moved", "", "What moved the ratio"),
    # the harness's own cost (serving/harness_speed.py; the report's harness section)
    ("name", "", "Benchmark"), ("harness_point", "", "Load"), ("harness_requests_per_s", "requests/s", "Requests/s", True),
    ("harness_added_latency_ms_p50", "ms", "Added latency p50"), ("harness_added_latency_ms_p99", "ms", "Added latency p99"),
    ("harness_lateness_ms_p99", "ms", "Send lateness p99"), ("client_cpu_ms_per_request", "ms/request", "Client CPU"),
    ("harness_overhead_fraction", "fraction"), ("harness_lateness_ms_p50", "ms"), ("harness_failed", "requests"),
    ("harness_requests", "requests"), ("harness_output_tokens", "tokens"), ("harness_send_rate_per_s", "requests/s"),
    ("harness_wall_s", "s"), ("client_busy_fraction", "fraction"), ("client_loop_lag_ms_p50", "ms"),
    ("client_loop_lag_ms_p99", "ms"), ("client_workers", "processes"), ("client_lagged", ""), ("client_lag_reason", ""),
    # a serving request's record (requests.csv)
    ("point_id", ""), ("point", ""), ("request_id", ""), ("user", ""), ("input_tokens", "tokens"),
    ("max_new_tokens", "tokens"), ("output_tokens", "tokens"), ("scheduled_s", "s"), ("sent_s", "s"),
    ("first_token_s", "s"), ("end_s", "s"), ("e2e_ms", "ms"), ("queue_wait_ms", "ms"),
))
KEYS_BY_KEY: dict[str, Key] = {k.key: k for k in KEYS}


def key_header(key: str) -> str:
    """A descriptive key's column header in a view."""
    return KEYS_BY_KEY[key].header


def csv_header(key: str) -> str:
    """A CSV column's header: the key, and its unit in parentheses where it has one (``ttft_ms (ms)``,
    ``context_tokens (tokens)``, ``model``); a key the registry does not know (a newer version's) as it is."""
    m = VIEW_METRICS_BY_KEY.get(key)
    unit = m.unit if m is not None else KEYS_BY_KEY[key].unit if key in KEYS_BY_KEY else ""
    return f"{key} ({unit})" if unit else key
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
    # the client's own cost in the point (serving/harness_speed.client_cost)
    "harness_lateness_ms_p99", "client_cpu_ms_per_request", "harness_overhead_fraction", "client_lagged",
    "offered_rate_per_s",
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
