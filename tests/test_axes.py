"""Every ablation axis on the CPU presets: each is a parametrization of benchmarks/test_deployment.py
selected by options, run end to end in a pytest subprocess with small values.

Five runs keep the file under ~90 s on 2 cores (the tiny presets take well under a second per case,
the subprocess start ~4 s, a cold CPU torch.compile of tiny-dense ~25-30 s):

1. the default matrix (no axis options): exactly the 4 CPU cases;
2. shapes: contexts 64,200 x new tokens 4,8 x batch 1,4, with routing statistics and the roofline;
3. precision x decoding (bf16,fp16,fp32 x greedy + 4 sampled presets); tokens are recorded and
   sampled rounds replayed with the same seed; one combination is made to fail mid-measurement
   (fp16 runs on this CPU, so the failure is injected) to check it is recorded, not a crash;
4. MoE experts implementation x context mode (exact, paper-truncate);
5. serving stack eager,static on tiny-dense only (static compiles the decode step with inductor;
   the MoE preset compiles for another ~15 s, too long for CI).
"""

from __future__ import annotations

import json
import math

import pytest

from pytest_moeperf.results.results_log import read_log

from bench_project import copy_benchmark

pytestmark = pytest.mark.e2e  # every test here runs a subprocess or pytester

pytest.importorskip("torch")
pytest.importorskip("transformers")

SAMPLED = ("top_p0.9", "top_k50", "temp1.5", "temp0.3")
DECODINGS = ("greedy",) + SAMPLED
# the fault injected in run 3: the error CPU kernels without Half support raise
HALF_ERROR = "RuntimeError: \"addmm_impl_cpu_\" not implemented for 'Half'"


@pytest.fixture(autouse=True)
def _one_cpu_thread(monkeypatch):
    """One OpenMP thread per benchmark subprocess. The tiny presets gain nothing from threads, and
    on a shared 2-core runner (other jobs, pytest itself) OpenMP's spin-waiting oversubscribes the
    cores: a 2-thread tiny-dense round went from ~10 ms to ~400 ms under a load of 4 while the
    1-thread run stayed at ~10 ms. Only the speed is affected, never what the tests assert."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict, list[dict], str]:
    """One benchmark run; returns the result, the --benchmark-json document, the log records, the output."""
    copy_benchmark(pytester.path)
    log, bjson = pytester.path / "r.jsonl", pytester.path / "bench.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--moeperf-gate", "off",
                                           "--moeperf-results", str(log), "--benchmark-json", str(bjson),
                                           *args, "benchmarks", timeout=600)  # a hang guard: a cold inductor compile on 2 busy cores took > 300 s
    out = result.stdout.str() + "\n" + result.stderr.str()
    doc = json.loads(bjson.read_text()) if bjson.exists() else {"benchmarks": []}
    records = read_log(str(log)) if log.exists() else []
    return result, doc, records, out


def _by_id(doc: dict) -> dict[str, dict]:
    """benchmark name test_generate[ID] -> extra_info."""
    return {b["name"].removeprefix("test_generate[").removesuffix("]"): b for b in doc["benchmarks"]}


def _check_round_metrics(cid: str, bench: dict, new_tokens: int, batch: int, rounds: int) -> None:
    x = bench["extra_info"]
    assert x["new_tokens"] == new_tokens and x["batch_size"] == batch, cid
    assert x["rounds"] == rounds and bench["stats"]["rounds"] == rounds, cid
    s = x["samples"]
    assert len(s["ttft_ms"]) == len(s["e2e_ms"]) == len(s["decode_tokens_per_s"]) == rounds, cid
    for ttft, e2e, dec, e2e_tps in zip(s["ttft_ms"], s["e2e_ms"], s["decode_tokens_per_s"], s["e2e_tokens_per_s"]):
        # decode throughput counts every sequence of the batch: batch x (n - 1) tokens after the first
        assert dec == pytest.approx(batch * (new_tokens - 1) / ((e2e - ttft) / 1000.0), rel=1e-9), cid
        assert e2e_tps == pytest.approx(batch * new_tokens / (e2e / 1000.0), rel=1e-9), cid
    # the analytic KV cache matches the bytes the cache object really holds
    assert x["kv_cache_bytes"] == x["kv_cache_measured_bytes"] > 0, cid
    # roofline: bytes per decode step are known; the fraction needs a measured bandwidth (CUDA only)
    assert isinstance(x["decode_step_bytes"], int) and x["decode_step_bytes"] > x["kv_cache_bytes"], cid
    assert x["memory_bandwidth_bytes_per_s"] is None and x["roofline_fraction"] is None, cid


# --- 1. the default matrix ---------------------------------------------------------------------------

def test_no_axis_options_run_only_the_default_cpu_matrix(pytester):
    result, doc, records, out = _run(pytester)
    assert result.ret == 0, out[-3000:]
    result.assert_outcomes(passed=4)
    assert set(_by_id(doc)) == {"tiny-moe-c64-n16", "tiny-moe-c128-n16", "tiny-dense-c64-n16", "tiny-dense-c128-n16"}
    for cid, bench in _by_id(doc).items():
        x = bench["extra_info"]
        assert (x["dtype"], x["backend"], x["batch_size"], x["decoding"], x["experts"], x["context_mode"]) == \
            ("bf16", "eager", 1, "greedy", None, "exact"), cid
        assert "routing" not in x, cid  # routing statistics only with --moeperf-routing
        _check_round_metrics(cid, bench, new_tokens=16, batch=1, rounds=10)
    assert [r["type"] for r in records].count("case") == 4


# --- 2. contexts x new tokens x batch, routing and roofline -----------------------------------------

def test_contexts_new_tokens_batch_routing_roofline(pytester):
    result, doc, records, out = _run(pytester, "--moeperf-rounds", "2", "--moeperf-contexts", "64,200",
                                     "--moeperf-new-tokens", "4,8", "--moeperf-batch", "1,4", "--moeperf-routing")
    assert result.ret == 0, out[-3000:]
    result.assert_outcomes(passed=16)
    benches = _by_id(doc)
    expected = {f"{m}-c{c}-n{n}{'-b4' if b == 4 else ''}" for m in ("tiny-moe", "tiny-dense")
                for c in (64, 200) for n in (4, 8) for b in (1, 4)}
    assert set(benches) == expected
    for cid, bench in benches.items():
        x = bench["extra_info"]
        c, n, b = int(cid.split("-c")[1].split("-")[0]), int(cid.split("-n")[1].split("-")[0]), 4 if "-b4" in cid else 1
        assert x["context_tokens"] == c, cid
        _check_round_metrics(cid, bench, new_tokens=n, batch=b, rounds=2)
        assert x["kv_cache_layout"]["cached_tokens"] == c + n - 1, cid
        if b == 4:  # the KV cache scales with the batch
            one = benches[cid.replace("-b4", "")]["extra_info"]
            assert x["kv_cache_bytes"] == 4 * one["kv_cache_bytes"], cid
            assert x["decode_step_bytes"] > one["decode_step_bytes"], cid
        if x["architecture"] == "moe":
            r = x["routing"]
            assert (r["experts"], r["top_k"], r["tokens"]) == (4, 2, b * c), cid
            assert len(r["layers"]) == 2, cid
            for layer in r["layers"]:
                assert len(layer["tokens_per_expert"]) == 4, cid
                assert sum(layer["tokens_per_expert"]) == r["tokens"] * r["top_k"], cid
                assert 0 <= layer["entropy_bits"] <= math.log2(4) + 1e-9, cid
                assert layer["max_over_mean_load"] >= 1.0, cid
            assert r["uniform_entropy_bits"] == 2.0 and r["mean_entropy_bits"] <= 2.0 + 1e-9, cid
        else:
            assert x.get("routing") is None, cid  # dense: nothing to route
    assert "routing" in benches["tiny-moe-c64-n4"]["extra_info"]


# --- 3. precision x decoding, sampled rounds seeded, a failing combination recorded ------------------

DECODING_CONFTEST = '''
import json

from pytest_moeperf.measure import measure

_generate = measure.CaseRunner._generate


def _generate_recorded(self, round_index, with_clock=True):
    case = self.case
    if case.model == "tiny-moe" and case.dtype == "fp16" and round_index == 1:
        # a kernel without Half support, failing in the second measured round
        raise RuntimeError("\\"addmm_impl_cpu_\\" not implemented for 'Half'")
    timing, out = _generate(self, round_index, with_clock)
    if round_index >= 0:  # measured rounds (the priming calls are -1, -2)
        start = self.input_ids.shape[1]
        rec = {"case": case.case_id, "round": round_index, "stamps": len(timing.token_ms),
               "tokens": out.sequences[:, start:].tolist()}
        if self.gen_kwargs.get("do_sample"):  # same round, same seed: the same tokens again
            rec["replay"] = _generate(self, round_index, with_clock)[1].sequences[:, start:].tolist()
        with open("tokens.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\\n")
    return timing, out


measure.CaseRunner._generate = _generate_recorded
'''


def test_dtype_and_decoding_with_a_failing_combination(pytester):
    pytester.makeconftest(DECODING_CONFTEST)
    result, doc, records, out = _run(pytester, "--moeperf-rounds", "3", "--moeperf-new-tokens", "4",
                                     "--moeperf-contexts", "64", "--moeperf-dtype", "bf16,fp16,fp32",
                                     "--moeperf-decoding", ",".join(DECODINGS))
    # the failing combination fails its tests; every other case runs and passes: no crash
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    result.assert_outcomes(passed=25, failed=5)
    suffix = {"bf16": "", "fp16": "-fp16", "fp32": "-fp32"}
    ids = {f"{m}-c64-n4{suffix[d]}{'' if dec == 'greedy' else '-' + dec}": (m, d, dec)
           for m in ("tiny-moe", "tiny-dense") for d in suffix for dec in DECODINGS}
    failed_ids = {cid for cid, (m, d, _) in ids.items() if m == "tiny-moe" and d == "fp16"}
    benches = _by_id(doc)
    assert set(benches) == set(ids) - failed_ids  # a failed case leaves no benchmark in the JSON
    for cid, bench in benches.items():
        m, d, dec = ids[cid]
        x = bench["extra_info"]
        assert (x["model"], x["dtype"], x["decoding"]) == (m, d, dec), cid
        _check_round_metrics(cid, bench, new_tokens=4, batch=1, rounds=3)
    # fp32 holds twice the bytes of bf16/fp16
    assert benches["tiny-dense-c64-n4-fp32"]["extra_info"]["kv_cache_bytes"] == \
        2 * benches["tiny-dense-c64-n4"]["extra_info"]["kv_cache_bytes"]
    assert benches["tiny-dense-c64-n4-fp16"]["extra_info"]["kv_cache_bytes"] == \
        benches["tiny-dense-c64-n4"]["extra_info"]["kv_cache_bytes"]

    # failures: one "failed" record each in the results log, one FAILED line each in the summary
    failed = [r for r in records if r["type"] == "failed"]
    assert sorted(r["case"] for r in failed) == sorted(failed_ids)
    for r in failed:
        assert r["error"] == HALF_ERROR, r
        assert r["fullname"] == f"benchmarks/test_deployment.py::test_generate[{r['case']}]"
    assert sorted(r["benchmark"]["name"] for r in records if r["type"] == "case") == \
        sorted(f"test_generate[{cid}]" for cid in benches)
    summary = out.split("moeperf deployment metrics", 1)[1]
    for cid in failed_ids:
        assert summary.count(f"FAILED {cid}: ") == 1, cid
        assert f"FAILED {cid}: {HALF_ERROR}\n" in summary, cid

    # tokens: exactly n per round; sampled rounds reproduce under their seed and differ between rounds
    recs = [json.loads(ln) for ln in (pytester.path / "tokens.jsonl").read_text().splitlines()]
    by_case: dict[str, dict[int, list]] = {}
    for rec in recs:
        assert rec["stamps"] == 4 and all(len(seq) == 4 for seq in rec["tokens"]), rec
        by_case.setdefault(rec["case"], {})[rec["round"]] = rec["tokens"]
        if ids[rec["case"]][2] != "greedy":
            assert rec["replay"] == rec["tokens"], rec  # seeded per round
    assert set(by_case) == set(ids)
    for cid, rounds in by_case.items():
        if cid in failed_ids:
            assert sorted(rounds) == [0], cid  # one measured round, then the fault
            continue
        assert sorted(rounds) == [0, 1, 2], cid
        m, d, dec = ids[cid]
        if dec == "greedy":
            assert rounds[0] == rounds[1] == rounds[2], cid
        elif dec == "temp1.5":  # near-uniform sampling over 512 tokens: each round's own seed shows
            assert len({json.dumps(t) for t in rounds.values()}) > 1, cid
    greedy_tokens = by_case["tiny-dense-c64-n4"][0]
    assert any(by_case[f"tiny-dense-c64-n4-{dec}"][0] != greedy_tokens for dec in SAMPLED)


# --- 4. MoE experts implementation x context mode ------------------------------------------------------

def test_experts_and_context_mode(pytester):
    result, doc, records, out = _run(pytester, "--moeperf-rounds", "2", "--moeperf-new-tokens", "4",
                                     "--moeperf-contexts", "64", "--moeperf-experts", "eager,grouped_mm,batched_mm",
                                     "--moeperf-context-mode", "exact,paper-truncate")
    assert result.ret == 0, out[-3000:]
    result.assert_outcomes(passed=8)  # tiny-moe: 3 x 2; tiny-dense ignores the experts axis: 1 x 2
    benches = _by_id(doc)
    modes = {"exact": "", "paper-truncate": "-paper-truncate"}
    expected = {f"tiny-moe-c64-n4-experts_{e}{modes[m]}" for e in ("eager", "grouped_mm", "batched_mm") for m in modes}
    expected |= {f"tiny-dense-c64-n4{modes[m]}" for m in modes}
    assert set(benches) == expected
    for cid, bench in benches.items():
        x = bench["extra_info"]
        _check_round_metrics(cid, bench, new_tokens=4, batch=1, rounds=2)
        assert x["context_tokens"] == 64, cid
        assert x["context_mode"] == ("paper-truncate" if cid.endswith("-paper-truncate") else "exact"), cid
        if x["architecture"] == "moe":
            assert x["experts"] == cid.split("experts_")[1].removesuffix("-paper-truncate"), cid
        else:
            assert x["experts"] is None and "experts" not in cid, cid


# --- 5. serving stack: eager vs static (static cache + torch.compile) ------------------------------------

def test_static_backend_compiles_once_into_the_compile_cache(pytester):
    cache = pytester.path / "inductor-cache"
    result, doc, records, out = _run(pytester, "--moeperf-rounds", "2", "--moeperf-new-tokens", "4",
                                     "--moeperf-contexts", "64", "--moeperf-models", "tiny-dense",
                                     "--moeperf-backend", "eager,static", "--moeperf-compile-cache", str(cache))
    assert result.ret == 0, out[-3000:]
    result.assert_outcomes(passed=2)
    benches = _by_id(doc)
    assert set(benches) == {"tiny-dense-c64-n4", "tiny-dense-c64-n4-static"}
    eager, static = benches["tiny-dense-c64-n4"], benches["tiny-dense-c64-n4-static"]
    for cid, bench in benches.items():
        _check_round_metrics(cid, bench, new_tokens=4, batch=1, rounds=2)
    xs = static["extra_info"]
    assert xs["backend"] == "static" and eager["extra_info"]["backend"] == "eager"
    # static cache: allocated for context + new tokens up front, and measured as such
    assert xs["kv_cache_layout"]["static_max_cache_len"] == 64 + 4 - 1
    # the compile is the first (discarded) call, reported on its own, never a round
    rounds_s = static["stats"]["data"]
    assert len(rounds_s) == 2 and xs["rounds"] == 2
    assert xs["first_call_s"] > 1.0 and xs["first_call_s"] > 10 * max(rounds_s), (xs["first_call_s"], rounds_s)
    assert xs["second_call_s"] < xs["first_call_s"] / 10
    assert xs["first_call_s"] > 10 * eager["extra_info"]["first_call_s"]
    assert xs["paper_ttft_ms"] is None  # a 1-token generate would recompile the static shape
    # inductor's cache went to --moeperf-compile-cache (TORCHINDUCTOR_CACHE_DIR)
    assert xs["compile_cache"] == str(cache) and eager["extra_info"]["compile_cache"] is None
    assert cache.is_dir() and any(p.is_file() for p in cache.rglob("*")), "inductor wrote nothing to the cache"
