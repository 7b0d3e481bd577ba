"""Per-load-point serving metrics from the load generator's records. Pure functions, no torch.

Definitions (docs/serving.md has them with units; schema.py holds the keys):
  TTFT   = first chunk's arrival - send time (per request)
  TPOT   = (E2E - TTFT) / (N - 1)   for requests with N >= 2 output tokens
  ITL    = gaps between consecutive chunk arrivals of a request (all requests pooled)
  E2E    = the last content chunk's arrival - send time (vLLM's rule; the stream's close is info.stream_end_s)
  queue wait = the engine's admission stamp - send time, successful requests only (backends that
               report admission); never clipped: a negative wait means the engine's clock and the
               harness's disagree, and is shown as measured
  request throughput = successful requests / makespan; output tokens/s = their output tokens / makespan
  tokens/s per user = median over requests with N >= 2 of (N - 1) / (E2E - TTFT) (= 1000 / median
                      TPOT only for an odd count: an even count averages the two middle rates)
  goodput = requests that succeeded and met every limit of the SLO / makespan (slo.py: a request
            with N = 1 has no TPOT and misses a TPOT limit)
The makespan is the run's start to the last request's end, for every outcome (loadgen.makespan): a
request stopped at the point's time limit or never sent ends at the stop. A point where more than
MAX_FAILED_SHARE of the requests failed is a failed point (point_failure). The steady-state window runs from
the first request's end (every user has had a full request in flight) to the last request's send
(after it no new work arrives: the drain); energy and steady tokens/s use that window only.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from pytest_moeperf.metrics.stats import percentile
from .slo import Slo

PCTS = (50, 90, 99)
MAX_FAILED_SHARE = 0.10  # more failed requests than this and the point failed: no PASS, never the knee


def point_failure(info: dict) -> str | None:
    """Why a measured point counts as failed (one line), or None: no request succeeded, or more than
    MAX_FAILED_SHARE of its requests failed (never sent and stopped at the time limit included)."""
    n, failed = info["requests"], info["failed_requests"]
    errors = "; ".join(info["errors"][:2])
    if info["requests_ok"] == 0:
        return f"no request succeeded: {errors}"
    if n and failed / n > MAX_FAILED_SHARE:
        return (f"{failed} of {n} requests failed (more than {MAX_FAILED_SHARE:.0%}; its figures are "
                f"in the records, not a result): {errors}")
    return None


def request_latencies(rec) -> dict:
    """ttft/tpot/e2e/queue wait (ms) of one record; None where undefined (failed, N < 2, unreported)."""
    out = {"ttft_ms": None, "tpot_ms": None, "e2e_ms": None, "queue_wait_ms": None, "itl_ms": []}
    if rec.error is not None or rec.first_token_s is None or rec.end_s is None:
        return out
    admitted = (rec.info or {}).get("engine_admitted_s")
    if isinstance(admitted, (int, float)):  # not clipped: a negative wait shows the two clocks disagree
        out["queue_wait_ms"] = (admitted - rec.sent_s) * 1e3
    ttft = rec.first_token_s - rec.sent_s
    e2e = rec.end_s - rec.sent_s
    out["ttft_ms"], out["e2e_ms"] = ttft * 1e3, e2e * 1e3
    if rec.output_tokens >= 2:
        out["tpot_ms"] = (e2e - ttft) / (rec.output_tokens - 1) * 1e3
    t = rec.chunk_times_s
    out["itl_ms"] = [(b - a) * 1e3 for a, b in zip(t, t[1:])]
    return out


def _pcts(prefix: str, values: Sequence[float]) -> dict:
    out = {f"{prefix}_p{q}": percentile(values, q) for q in PCTS}
    out[f"{prefix}_n"] = len(values)
    return out


def steady_window(records) -> tuple[float, float] | None:
    ends = [r.end_s for r in records if r.error is None and r.end_s is not None]
    if not ends or not records:
        return None
    t0, t1 = min(ends), max(r.sent_s for r in records)
    return (t0, t1) if t1 > t0 else None


def tokens_between(records, t0: float, t1: float) -> int:
    return sum(n for r in records for t, n in zip(r.chunk_times_s, r.chunk_tokens) if t0 <= t <= t1)


def mean_in_flight(records, t0: float, t1: float) -> float | None:
    """Time-average number of requests between send and end inside [t0, t1] (Little's law)."""
    if t1 <= t0:
        return None
    busy = sum(max(0.0, min(r.end_s, t1) - max(r.sent_s, t0)) for r in records if r.end_s is not None)
    return busy / (t1 - t0)


def slo_counts(lat: Iterable[dict], slo: Slo) -> int:
    return sum(1 for x in lat if x["e2e_ms"] is not None and slo.meets(x["ttft_ms"], x["tpot_ms"], x["e2e_ms"]))


def load_point_metrics(records: Sequence, duration_s: float, slos: Sequence[Slo], primary: Slo) -> dict:
    """extra_info keys of one load point, and ``samples`` (per-request lists for the gate's rank test)."""
    lat = [request_latencies(r) for r in records]
    ok = [r for r in records if r.error is None]
    good = [x for x in lat if x["e2e_ms"] is not None]
    ttft = [x["ttft_ms"] for x in good]
    tpot = [x["tpot_ms"] for x in good if x["tpot_ms"] is not None]
    e2e = [x["e2e_ms"] for x in good]
    itl = [g for x in good for g in x["itl_ms"]]
    qwait = [x["queue_wait_ms"] for x in good if x["queue_wait_ms"] is not None]
    per_user = [1000.0 / t for t in tpot if t > 0]
    out_tokens = sum(r.output_tokens for r in ok)
    dur = duration_s if duration_s > 0 else None
    out: dict = {
        "requests": len(records), "requests_ok": len(ok), "failed_requests": len(records) - len(ok),
        "errors": sorted({r.error for r in records if r.error is not None})[:5],
        "duration_s": duration_s, "input_tokens_total": sum(r.input_tokens for r in ok), "output_tokens_total": out_tokens,
        "request_throughput_per_s": len(ok) / dur if dur else None,
        "output_tokens_per_s": out_tokens / dur if dur else None,
        "output_tokens_per_s_per_user": percentile(per_user, 50),
    }
    out.update(_pcts("req_ttft_ms", ttft))
    out.update(_pcts("req_tpot_ms", tpot))
    out.update(_pcts("req_itl_ms", itl))
    out.update(_pcts("req_e2e_ms", e2e))
    out.update(_pcts("req_queue_wait_ms", qwait) if qwait else {f"req_queue_wait_ms_p{q}": None for q in PCTS})
    by_slo = {}
    for slo in list(slos) + ([primary] if primary not in slos else []):
        met = slo_counts(good, slo)
        by_slo[slo.name] = {"attainment": met / len(records) if records else None,
                            "goodput_req_per_s": met / dur if dur else None, **slo.as_dict()}
    out["slo"] = primary.as_dict()
    out["slo_attainment"] = by_slo[primary.name]["attainment"]
    out["goodput_req_per_s"] = by_slo[primary.name]["goodput_req_per_s"]
    out["slo_by_name"] = by_slo
    win = steady_window(records)
    out["steady_window_s"] = [win[0], win[1]] if win else None
    out["steady_output_tokens_per_s"] = tokens_between(records, *win) / (win[1] - win[0]) if win else None
    out["mean_in_flight"] = mean_in_flight(records, *win) if win else None
    out.update(harness_timing(records))
    out["samples"] = {"req_ttft_ms": ttft, "req_tpot_ms": tpot, "req_e2e_ms": e2e, "req_queue_wait_ms": qwait,
                      "req_decode_tokens_per_s": per_user}
    return out


def harness_timing(records) -> dict:
    """How the harness clock agrees with the engine's own stamps: harness arrival - engine stamp of
    the same chunk (the delivery delay, >= 0 when both read one clock), and the open-loop lateness
    (send - scheduled arrival) of the harness itself."""
    delay = [(h - e) * 1e3 for r in records for h, e in zip(r.chunk_times_s, r.engine_times_s) if e is not None]
    late = [(r.sent_s - r.scheduled_s) * 1e3 for r in records if r.user is None]
    return {"clock_delivery_ms_p50": percentile(delay, 50), "clock_delivery_ms_p99": percentile(delay, 99),
            "clock_delivery_ms_min": min(delay) if delay else None, "clock_delivery_n": len(delay),
            "harness_lateness_ms_p50": percentile(late, 50), "harness_lateness_ms_p99": percentile(late, 99)}
