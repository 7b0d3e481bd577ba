"""Unit and property tests of the metric formulas, statistics, parameter counts and KV layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.measure.token_clock import RoundTiming
from pytest_moeperf.measure.memory import KvLayout, kv_cache_bytes
from pytest_moeperf.measure.run_options import parse_options
from pytest_moeperf.metrics.derived import decode_step_bytes, roofline_fraction
from pytest_moeperf.metrics.stats import ci95_mean, cv, median, percentile

# -- one round's derived metrics ------------------------------------------------------------

gaps = st.lists(st.floats(min_value=0.01, max_value=500.0, allow_nan=False), min_size=2, max_size=300)


@given(ttft=st.floats(min_value=0.1, max_value=5000.0), gaps_ms=gaps, tail=st.floats(min_value=0.0, max_value=50.0),
       batch=st.integers(min_value=1, max_value=64))
@settings(max_examples=200, deadline=None)
def test_round_formulas(ttft, gaps_ms, tail, batch):
    stamps = [ttft]
    for g in gaps_ms:
        stamps.append(stamps[-1] + g)
    e2e = stamps[-1] + tail
    r = RoundTiming(e2e_ms=e2e, token_ms=tuple(stamps), batch_size=batch)
    n = len(stamps)
    assert r.new_tokens == n and r.ttft_ms == ttft
    # TPOT = (E2E - TTFT) / (n - 1): the decode span spread over the tokens after the first
    assert r.tpot_ms == pytest.approx((e2e - ttft) / (n - 1))
    assert r.ttft_ms + r.tpot_ms * (n - 1) == pytest.approx(e2e)
    # decode throughput counts every sequence of the batch, prefill excluded
    assert r.decode_tokens_per_s * r.tpot_ms / 1000.0 == pytest.approx(batch)
    # the paper's "TPOT": tokens/s including prefill
    assert r.e2e_tokens_per_s == pytest.approx(batch * n / (e2e / 1000.0))
    assert r.itl_ms == pytest.approx(gaps_ms)


def test_one_token_round_has_no_tpot():
    r = RoundTiming(e2e_ms=12.0, token_ms=(10.0,), batch_size=1)
    assert r.tpot_ms is None and r.decode_tokens_per_s is None and r.itl_ms == []


# -- statistics -----------------------------------------------------------------------------

values = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60)


@given(values, st.floats(min_value=0, max_value=100))
@settings(max_examples=200, deadline=None)
def test_percentile_is_numpy_linear_and_bounded(vals, q):
    p = percentile(vals, q)
    assert p == pytest.approx(float(np.percentile(vals, q, method="linear")))
    assert min(vals) - 1e-6 <= p <= max(vals) + 1e-6


def test_p95_of_ten_rounds_sits_near_the_max():
    vals = list(range(1, 11))  # 1..10
    # type 7: h = (n - 1) * 0.95 = 8.55 -> 0.55 of the way from the 9th (9) to the 10th (10)
    assert percentile(vals, 95) == pytest.approx(9.55)
    assert median(vals) == 5.5


def test_cv_and_interval():
    assert cv([1.0]) is None and ci95_mean([1.0]) is None
    assert cv([2.0, 2.0, 2.0]) == 0.0
    lo, hi = ci95_mean([9.0, 10.0, 11.0])
    assert lo < 10.0 < hi and hi - 10.0 == pytest.approx(10.0 - lo)


# -- parameters and bytes of the paper's models (meta device, no memory) -----------------------

@pytest.mark.parametrize(("name", "total_b", "active_b"), [
    ("gpt-oss-20b", 20.91, 3.61),   # model card: 20.9 B total, 3.6 B active
    ("qwen3-32b", 32.76, 31.98),
    ("yi-34b", 34.39, 33.93),
])
def test_param_counts(name, total_b, active_b):
    from pytest_moeperf.model.presets import count_params

    c = count_params(name)
    assert c.total / 1e9 == pytest.approx(total_b, abs=0.01)
    assert c.active / 1e9 == pytest.approx(active_b, abs=0.01)


def test_gpt_oss_weights_are_41_83_gb_in_bf16():
    from pytest_moeperf.model.presets import count_params

    assert 2 * count_params("gpt-oss-20b").total / 1e9 == pytest.approx(41.83, abs=0.01)


# -- KV cache layout -----------------------------------------------------------------------------

GPT_OSS_LAYOUT = KvLayout(layers_full=12, layers_sliding=12, sliding_window=128, kv_heads=8, head_dim=64)


def test_gpt_oss_kv_bytes_match_the_h200_cache():
    # 2048 context + 64 new tokens: the cache holds 2111 positions (the last token is never fed);
    # full layers keep all, sliding layers keep window - 1 = 127. The H200 run's cache tensors
    # held exactly 55 001 088 bytes (baselines/h200, kv_cache_measured_bytes).
    assert kv_cache_bytes(GPT_OSS_LAYOUT, 2048 + 64 - 1, 1, 2) == 55_001_088


def test_kv_layout_from_configs():
    from pytest_moeperf.measure.memory import kv_layout
    from pytest_moeperf.model.presets import get_preset

    assert kv_layout(get_preset("gpt-oss-20b").make_config()) == GPT_OSS_LAYOUT
    qwen = kv_layout(get_preset("qwen3-32b").make_config())
    assert (qwen.layers_full, qwen.layers_sliding, qwen.kv_heads, qwen.head_dim) == (64, 0, 8, 128)


@given(tokens=st.integers(min_value=1, max_value=200_000), batch=st.integers(min_value=1, max_value=64))
@settings(max_examples=100, deadline=None)
def test_kv_bytes_grow_linearly_until_the_window(tokens, batch):
    b = kv_cache_bytes(GPT_OSS_LAYOUT, tokens, batch, 2)
    per_pos_layer = 2 * 8 * 64 * 2 * batch
    assert b == per_pos_layer * (12 * tokens + 12 * min(tokens, 127))
    # static cache: allocated up front, independent of the tokens used
    assert kv_cache_bytes(GPT_OSS_LAYOUT, tokens, batch, 2, static_max_len=4096) == per_pos_layer * (
        12 * 4096 + 12 * 128)


# -- roofline ------------------------------------------------------------------------------------

def test_roofline_fraction():
    step = decode_step_bytes(params_active=3_608_307_264, input_embedding_params=0, dtype_bytes=2,
                             kv_cache_bytes=55_001_088)
    assert step == 2 * 3_608_307_264 + 55_001_088
    # at 4.27 TB/s the floor is ~1.70 ms; a 10 ms/token decode is ~17% of the roof
    assert roofline_fraction(step, 4.27e12, 10.0) == pytest.approx(step / 4.27e12 * 1000 / 10.0)
    assert roofline_fraction(step, None, 10.0) is None and roofline_fraction(step, 4.27e12, None) is None


def test_batched_moe_step_reads_more_experts():
    one = decode_step_bytes(100, 0, 2, 0, batch_size=1, moe_inactive_params=280, n_experts=32, top_k=4)
    four = decode_step_bytes(100, 0, 2, 0, batch_size=4, moe_inactive_params=280, n_experts=32, top_k=4)
    # 280 inactive params over 28 inactive experts = 10 per expert; 4 tokens x top-4 reach
    # 32 (1 - (28/32)^4) = 13.24 distinct experts expected: 9.24 more than one token's 4
    assert one == 200 and four == 2 * (100 + int(10 * (32 * (1 - (28 / 32) ** 4) - 4)))
    assert four == 2 * (100 + 92)


# -- the per-token clock's own cost --------------------------------------------------------------

def test_token_clock_does_one_sync_and_one_clock_read_per_token():
    """What the sync clock adds per token is one device sync and one host-clock read (on the
    H200 the event clock cost no measurable time: docs/metrics.md); counted with injected ones."""
    import torch

    from pytest_moeperf.measure.token_clock import make_token_clock

    calls = []
    ticks = iter(range(1000))
    clock = make_token_clock(lambda: calls.append("sync"), now=lambda: calls.append("now") or float(next(ticks)))
    ids = torch.zeros((1, 8), dtype=torch.long)
    clock.begin(0.0)
    for _ in range(5):
        assert not clock(ids, None).any()  # never stops generation itself
    assert calls == ["sync", "now"] * 5  # the sync comes first: the stamp is taken after the token is done
    assert clock.stamps == [0.0, 1.0, 2.0, 3.0, 4.0]


class _FakeEvent:
    """A CUDA event stand-in: 'fires' at record time on a fake GPU clock (ms)."""

    gpu_ms = 0.0

    def record(self):
        self.at_ms = _FakeEvent.gpu_ms

    def elapsed_time(self, end):
        return end.at_ms - self.at_ms


def test_event_clock_stamps_are_round_start_plus_gpu_time():
    import torch

    from pytest_moeperf.measure.token_clock import make_token_clock

    clock = make_token_clock(None, "event", event_factory=_FakeEvent)
    ids = torch.zeros((2, 8), dtype=torch.long)
    _FakeEvent.gpu_ms = 1000.0
    clock.begin(50.0)  # host perf_counter seconds at the round's start
    for gpu_ms in (1200.0, 1210.0, 1225.0):  # each token done on the GPU 200, 210, 225 ms in
        _FakeEvent.gpu_ms = gpu_ms
        assert not clock(ids, None).any()  # never stops generation
    assert clock.stamps == []  # nothing is read before the round's closing sync
    clock.finish()
    assert clock.stamps == pytest.approx([50.2, 50.21, 50.225])
    clock.begin(60.0)  # a new round forgets the last one's events
    clock.finish()
    assert clock.stamps == []


@pytest.mark.parametrize(("setting", "device", "kind"), [
    ("auto", "cuda", "event"), ("auto", "cuda:1", "event"), ("auto", "cpu", "sync"),
    ("sync", "cuda", "sync"), ("event", "cuda", "event"),
])
def test_token_clock_kind(setting, device, kind):
    from pytest_moeperf.measure.token_clock import token_clock_kind

    assert token_clock_kind(setting, device) == kind


@pytest.mark.parametrize(("setting", "device", "words"), [
    ("event", "cpu", "needs a CUDA device"), ("events", "cuda", "use one of auto, event, sync"),
])
def test_token_clock_kind_errors(setting, device, words):
    from pytest_moeperf.measure.token_clock import token_clock_kind

    with pytest.raises(ValueError, match=words):
        token_clock_kind(setting, device)


# -- option parsing --------------------------------------------------------------------------------

def _get(**opts):
    return lambda name: opts.get(name)


@given(st.lists(st.integers(min_value=64, max_value=4000), min_size=1, max_size=6, unique=True))
@settings(max_examples=50, deadline=None)
def test_contexts_round_trip(ctxs):  # a value given twice is refused (test_bad_input.py)
    o = parse_options(_get(moeperf_gpu="cpu", moeperf_contexts=",".join(map(str, ctxs))), cuda_available=False)
    assert list(o.contexts) == ctxs
    assert [c.context_tokens for c in o.cases()] == [c for _m in o.models for c in ctxs]


@pytest.mark.parametrize(("opts", "fragment"), [
    ({"moeperf_contexts": "128,,512"}, "empty item"),
    ({"moeperf_contexts": "12x"}, "not a whole number"),
    ({"moeperf_rounds": "0"}, "below the minimum"),
    ({"moeperf_dtype": "fp8"}, "unknown value 'fp8'"),
    ({"moeperf_models": "llama-9000"}, "unknown model 'llama-9000'"),
    ({"moeperf_energy_window_s": "0.2"}, "use >= 1"),
    ({"moeperf_weights": ["gpt-oss-20b"]}, "MODEL=PATH_OR_HUB_ID"),
])
def test_bad_options_are_one_line(opts, fragment):
    with pytest.raises(ValueError) as e:
        parse_options(_get(moeperf_gpu="cpu", **opts), cuda_available=False)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_gpu_defaults_are_the_paper_matrix():
    o = parse_options(_get(moeperf_gpu="h200"), cuda_available=True)
    assert o.device == "cuda" and o.models == ("gpt-oss-20b", "qwen3-32b", "yi-34b")
    assert o.contexts == (128, 512, 1024, 2048) and o.new_tokens == (64,)
    assert [c.case_id for c in o.cases()][:2] == ["gpt-oss-20b-c128-n64", "gpt-oss-20b-c512-n64"]
    assert len(o.cases()) == 12


@pytest.mark.e2e
def test_readme_example_without_pytest_runs():
    """The README's "Without pytest" snippet, run as written."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"## Without pytest.*?```python\n(.*?)```", readme, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)  # a guard against a hang, not a speed target
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TTFT" in out.stdout and "ms/token" in out.stdout


# -- the results log ---------------------------------------------------------------------------------

def test_results_log_survives_a_torn_line_followed_by_appends(tmp_path):
    import warnings

    from pytest_moeperf.results.results_log import ResultsLog, read_log

    path = str(tmp_path / "r.jsonl")
    log = ResultsLog(path, "fp1")
    log.case_finished({"fullname": "t[a]", "param": "a", "extra_info": {}})
    with open(path, "a") as fh:
        fh.write('{"type": "case", "benchm')  # a crash mid-write
    log.case_finished({"fullname": "t[b]", "param": "b", "extra_info": {}})  # the next session appends
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = read_log(path)
    assert [r["benchmark"]["param"] for r in recs] == ["a", "b"]
    assert any("skipped 1 record(s) cut short by an interrupted write" in str(w.message) for w in caught)


def test_resume_and_rebuild_trust_only_the_latest_record_under_the_same_settings(tmp_path):
    from pytest_moeperf.results.log_document import to_benchmark_document
    from pytest_moeperf.results.results_log import ResultsLog, finished_case_ids, read_log

    path = str(tmp_path / "r.jsonl")
    old, new = ResultsLog(path, "old"), ResultsLog(path, "new")
    old.case_finished({"fullname": "t[a]", "param": "a", "extra_info": {}})
    new.case_finished({"fullname": "t[b]", "param": "b", "extra_info": {}})
    new.case_finished({"fullname": "t[c]", "param": "c", "extra_info": {}})
    new.case_failed("t[c]", "c", "CUDA out of memory. Tried to allocate 253.12 GiB")
    assert finished_case_ids(path, "new") == {"b"}  # a: other settings; c: failed since
    assert finished_case_ids(path) == {"a", "b"}
    doc = to_benchmark_document(read_log(path))
    assert sorted(b["fullname"] for b in doc["benchmarks"]) == ["t[a]", "t[b]"]
    assert doc["moeperf_failed"] == [{"fullname": "t[c]", "case": "c",
                                      "error": "CUDA out of memory. Tried to allocate 253.12 GiB"}]
