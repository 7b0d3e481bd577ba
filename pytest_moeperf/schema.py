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


@dataclass(frozen=True)
class Metric:
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


METRICS: tuple[Metric, ...] = (
    Metric("ttft_ms", "ms", "lower", "latency",
           "time to first token: generate() call to the first new token on the host, device synchronized; "
           "prefill included; median over rounds", "ttft_ms"),
    Metric("ttft_ms_p95", "ms", "lower", "latency",
           "95th percentile of per-round TTFT (numpy 'linear' method, n = rounds)"),
    Metric("tpot_ms", "ms/token", "lower", "latency",
           "time per output token = (E2E - TTFT) / (n - 1); median over rounds", "tpot_ms"),
    Metric("itl_ms_p50", "ms", "lower", "latency",
           "median of all inter-token gaps of all rounds (first token excluded)", "itl_ms_p50"),
    Metric("itl_ms_p95", "ms", "lower", "latency",
           "95th percentile of all inter-token gaps of all rounds (numpy 'linear')"),
    Metric("e2e_ms_p50", "ms", "lower", "latency",
           "median end-to-end generate() time over rounds", "e2e_ms"),
    Metric("e2e_ms_p95", "ms", "lower", "latency",
           "95th percentile of end-to-end time over rounds (numpy 'linear'; with 10 rounds this is "
           "0.55 of the way from the 9th to the 10th value)"),
    Metric("decode_tokens_per_s", "tokens/s", "higher", "throughput",
           "decode throughput = batch * (n - 1) / (E2E - TTFT); median over rounds", "decode_tokens_per_s"),
    Metric("e2e_tokens_per_s", "tokens/s", "higher", "throughput",
           "batch * n / E2E, prefill included (the paper's 'TPOT'); median over rounds", "e2e_tokens_per_s"),
    Metric("weights_bytes", "bytes", "lower", "memory",
           "device memory allocated after the model is loaded, before any input"),
    Metric("peak_allocated_bytes", "bytes", "lower", "memory",
           "torch.cuda.max_memory_allocated() over the measured rounds (reset after warm-up), "
           "read with the KV cache still alive"),
    Metric("peak_reserved_bytes", "bytes", "lower", "memory",
           "torch.cuda.max_memory_reserved() over the measured rounds"),
    Metric("peak_rss_bytes", "bytes", "lower", "memory",
           "peak resident set size during the measured rounds (VmHWM, reset per case on Linux)"),
    Metric("kv_cache_bytes", "bytes", "lower", "memory",
           "analytic bytes of the KV cache the model keeps after the last token, per layer type "
           "(sliding-window layers keep at most window-1 tokens)"),
    Metric("energy_j", "J", "lower", "energy",
           "gross board energy per round (NVML total-energy counter over windows of consecutive "
           "rounds, divided by the rounds in the window); median over windows", "energy_j"),
    Metric("tokens_per_j", "tokens/J", "higher", "energy",
           "generated tokens / gross energy; median over windows", "tokens_per_j"),
    Metric("j_per_1k_tokens", "J/1k tokens", "lower", "energy",
           "gross energy per 1000 generated tokens; median over windows", "j_per_1k_tokens"),
    Metric("ape_tpot", "tokens/s/B", "higher", "efficiency",
           "decode_tokens_per_s / active parameters in billions"),
    Metric("ape_inv_ttft", "1/s/B", "higher", "efficiency",
           "(1000 / ttft_ms) / active parameters in billions"),
    Metric("ape_energy", "tokens/J/B", "higher", "efficiency",
           "tokens_per_j / active parameters in billions"),
    Metric("tokens_per_s_per_gb", "tokens/s/GB", "higher", "efficiency",
           "decode_tokens_per_s / peak memory in decimal GB (allocator peak on GPU, RSS on CPU)"),
)


def _serving_pcts(name: str, unit: str, what: str, samples: str | None) -> tuple[Metric, ...]:
    return tuple(Metric(f"req_{name}_p{q}", unit, "lower", "latency",
                        f"{q}th percentile over the load point's requests of {what} (numpy 'linear'; n in req_{name}_n)",
                        samples if q == 50 else None, "serving") for q in (50, 90, 99))


# Serving metrics: one load point of benchmarks/test_serving.py; per-request samples for the gate's
# rank test; formulas in pytest_moeperf/serving/metrics.py and docs/serving.md.
SERVING_METRICS: tuple[Metric, ...] = (
    *_serving_pcts("ttft_ms", "ms", "TTFT = first chunk's arrival - send time", "req_ttft_ms"),
    *_serving_pcts("tpot_ms", "ms/token", "TPOT = (E2E - TTFT) / (N - 1), requests with N >= 2", "req_tpot_ms"),
    *_serving_pcts("itl_ms", "ms", "inter-token latency: gaps between a request's consecutive chunks, all requests pooled",
                   None),
    *_serving_pcts("e2e_ms", "ms", "E2E = end of stream - send time", "req_e2e_ms"),
    *_serving_pcts("queue_wait_ms", "ms", "queue wait = the engine's admission stamp - send time", "req_queue_wait_ms"),
    Metric("request_throughput_per_s", "requests/s", "higher", "throughput",
           "successful requests / makespan (run start to the last request's end)", None, "serving"),
    Metric("output_tokens_per_s", "tokens/s", "higher", "throughput",
           "output tokens of successful requests / makespan (per GPU: the engine runs on one)", None, "serving"),
    Metric("output_tokens_per_s_per_user", "tokens/s", "higher", "throughput",
           "median over requests of (N - 1) / (E2E - TTFT) = 1000 / TPOT", "req_decode_tokens_per_s", "serving"),
    Metric("goodput_req_per_s", "requests/s", "higher", "throughput",
           "requests that succeeded and met every limit of the gated SLO (first --moeperf-slo) / makespan", None, "serving"),
    Metric("slo_attainment", "fraction", "higher", "throughput",
           "requests meeting the gated SLO / all requests sent (failed ones count as missed)", None, "serving"),
    Metric("j_per_output_token", "J/token", "lower", "energy",
           "gross board energy over the steady-state window (first request's end to last request's send, "
           ">= 5 s) / output tokens emitted in it", None, "serving"),
    Metric("avg_power_w", "W", "lower", "energy",
           "gross board energy over the steady-state window / its length", None, "serving"),
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
