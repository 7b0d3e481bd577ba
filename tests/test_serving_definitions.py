"""Two serving definitions where the field's tools disagree, pinned (docs/serving.md, "Beside the field").

- Goodput: a request with one output token has no TPOT, so it misses any TPOT limit here (as in
  AIPerf); vLLM's ``--goodput`` counts it as good (it sets its TPOT to 0).
- Tokens/s per user: the median over requests of each request's (N - 1) / (E2E - TTFT) (AIPerf's
  per-request 1 / ITL, then its p50), which equals 1000 / median TPOT only when the median is one
  request's (an odd count of requests with N >= 2).
"""

from __future__ import annotations

import pytest

from pytest_moeperf.serving.loadgen import RequestRecord
from pytest_moeperf.serving.metrics import load_point_metrics
from pytest_moeperf.serving.slo import Slo


def _record(i: int, ttft_s: float, tpot_s: float, n: int) -> RequestRecord:
    chunks = tuple(ttft_s + k * tpot_s for k in range(n))
    return RequestRecord(f"r{i}", i, 16, n, 0.0, 0.0, ttft_s, chunks, (1,) * n, chunks[-1], n)


def test_a_one_token_request_misses_a_tpot_limit_and_meets_the_others():
    one = [_record(0, 0.010, 0.0, 1)]  # TTFT 10 ms, one token: no TPOT
    m = load_point_metrics(one, 1.0, [Slo("ttft", ttft_ms=50), Slo("e2e", e2e_ms=50)], Slo("tpot", tpot_ms=40))
    assert m["req_tpot_ms_n"] == 0
    assert m["slo_by_name"]["tpot"]["attainment"] == 0.0 and m["goodput_req_per_s"] == 0.0
    assert m["slo_by_name"]["ttft"]["attainment"] == 1.0 and m["slo_by_name"]["e2e"]["attainment"] == 1.0


def test_two_tokens_meet_the_same_tpot_limit():
    m = load_point_metrics([_record(0, 0.010, 0.020, 2)], 1.0, [], Slo("tpot", tpot_ms=40))
    assert m["req_tpot_ms_p50"] == pytest.approx(20.0) and m["goodput_req_per_s"] == 1.0


def test_tokens_per_s_per_user_is_the_median_of_per_request_rates():
    recs = [_record(0, 0.01, 0.010, 5), _record(1, 0.01, 0.040, 5)]  # TPOT 10 ms and 40 ms
    m = load_point_metrics(recs, 1.0, [], Slo("none"))
    assert m["output_tokens_per_s_per_user"] == pytest.approx((100.0 + 25.0) / 2)  # 62.5
    assert 1000.0 / m["req_tpot_ms_p50"] == pytest.approx(40.0)  # not the same figure with an even count
    recs.append(_record(2, 0.01, 0.020, 5))  # odd count: the median request's own rate
    m = load_point_metrics(recs, 1.0, [], Slo("none"))
    assert m["output_tokens_per_s_per_user"] == pytest.approx(1000.0 / m["req_tpot_ms_p50"]) == pytest.approx(50.0)
