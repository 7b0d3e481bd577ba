"""pytest_moeperf.parallel (assign, xdist_plugin, tensor_parallel): worker-to-GPU assignment, the merge of the workers' logs, the TP sums,
and one real pytest-xdist run (-n 2) on the CPU presets whose merged JSON the gate and the report read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_moeperf.parallel import assign as gpu_assign
from pytest_moeperf.parallel import tensor_parallel
from pytest_moeperf.metrics import schema

ROOT = Path(__file__).resolve().parents[1]
GPUS = [{"index": i, "uuid": f"GPU-{i}aaa", "name": "NVIDIA H200"} for i in range(4)]


# --- assignment (pure) ------------------------------------------------------------------------

def test_worker_n_gets_gpu_n():
    assert [gpu_assign.assign_gpu(f"gw{n}", GPUS)["index"] for n in range(4)] == [0, 1, 2, 3]
    assert gpu_assign.assign_gpu("gw1", GPUS)["uuid"] == "GPU-1aaa"


def test_replacement_worker_gets_a_free_gpu_and_none_when_all_held():
    assert gpu_assign.assign_gpu("gw4", GPUS, busy={0, 2, 3})["index"] == 1  # gw1 crashed, gw4 replaces it
    assert gpu_assign.assign_gpu("gw0", GPUS, busy={0})["index"] == 1
    with pytest.raises(ValueError, match="every GPU"):
        gpu_assign.assign_gpu("gw4", GPUS, busy={0, 1, 2, 3})


def test_no_gpus_means_no_assignment():
    assert gpu_assign.assign_gpu("gw0", []) is None
    gpu_assign.check_worker_count(8, [])  # CPU: any number of workers


def test_more_workers_than_gpus_is_one_line():
    gpu_assign.check_worker_count(4, GPUS)
    with pytest.raises(ValueError) as exc:
        gpu_assign.check_worker_count(5, GPUS)
    msg = str(exc.value)
    assert "\n" not in msg and "5 workers but 4 GPU(s)" in msg and "-n 4" in msg


def test_worker_number_and_log_paths():
    assert gpu_assign.worker_number("gw12") == 12
    with pytest.raises(ValueError):
        gpu_assign.worker_number("master")
    assert gpu_assign.worker_log_path(".moeperf/results.jsonl", "gw3") == ".moeperf/results.gw3.jsonl"
    assert gpu_assign.worker_log_path("log", "gw0") == "log.gw0.jsonl"
    assert gpu_assign.merged_default_path("/a/r.jsonl") == "/a/r.merged.json"


def test_gpu_list_option_and_selection():
    assert gpu_assign.parse_gpu_list(None) is None
    assert gpu_assign.parse_gpu_list("2, 0") == [2, 0]
    for bad in ("a", "0,0", "1,-1"):
        with pytest.raises(ValueError, match="--moeperf-gpus"):
            gpu_assign.parse_gpu_list(bad)
    assert [g["index"] for g in gpu_assign.select_gpus(GPUS, [3, 1])] == [3, 1]
    with pytest.raises(ValueError, match="no GPU 7"):
        gpu_assign.select_gpus(GPUS, [7])
    assert gpu_assign.select_gpus(None, [0, 1])[1] == {"index": 1, "uuid": None, "name": None}  # no NVML: as given
    assert [g["index"] for g in gpu_assign.select_gpus(GPUS, None, "2,3")] == [2, 3]
    assert [g["index"] for g in gpu_assign.select_gpus(GPUS, None, "GPU-3aaa,GPU-0")] == [3, 0]
    assert [g["index"] for g in gpu_assign.select_gpus(GPUS, None, "")] == [0, 1, 2, 3]
    assert gpu_assign.select_gpus(None, None, "0,1") == []


# --- stats and merge (pure) ---------------------------------------------------------------------

def test_stats_dict_has_pytest_benchmark_fields():
    s = gpu_assign.stats_dict([0.3, 0.1, 0.2, 0.4])
    for key in ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers",
                "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "data", "iterations"):
        assert key in s, key
    assert s["rounds"] == 4 and s["min"] == 0.1 and s["max"] == 0.4 and s["median"] == pytest.approx(0.25)
    assert s["total"] == pytest.approx(1.0) and s["ops"] == pytest.approx(4.0) and s["data"] == [0.3, 0.1, 0.2, 0.4]


def _case(name, worker, index, rounds=(0.1, 0.2)):
    return {"type": "case", "benchmark": {
        "name": f"test_generate[{name}]", "fullname": f"benchmarks/test_deployment.py::test_generate[{name}]",
        "group": None, "params": {"moeperf_case": name}, "param": name, "options": {},
        "stats": gpu_assign.stats_dict(list(rounds)),
        "extra_info": {"model": name.split("-c")[0], "ttft_ms": 1.0,
                       "gpu": {"worker": worker, "index": index, "uuid": f"GPU-{index}aaa", "name": "NVIDIA H200"}}}}


def _session(index):
    return {"type": "session", "machine_info": {"moeperf_version": "0.1.0", "torch_version": "2.13",
                                                "gpu": {"name": "NVIDIA H200", "uuid": f"GPU-{index}aaa",
                                                        "memory_total_bytes": 150}}}


def test_merge_keeps_every_case_with_its_gpu_and_lists_all_gpus():
    records = {"gw1": [_session(1), _case("qwen3-32b-c128-n64", "gw1", 1)],
               "gw0": [_session(0), _case("gpt-oss-20b-c128-n64", "gw0", 0), _case("gpt-oss-20b-c512-n64", "gw0", 0),
                       {"type": "failed", "fullname": "x", "case": "gpt-oss-20b-c2048-n64", "error": "CUDA out of memory"}]}
    doc = gpu_assign.merge_worker_records(records, {"node": "host", "moeperf_version": "0.1.0"}, {"id": "abc"})
    names = [b["name"] for b in doc["benchmarks"]]
    assert sorted(names) == sorted(["test_generate[gpt-oss-20b-c128-n64]", "test_generate[gpt-oss-20b-c512-n64]",
                                    "test_generate[qwen3-32b-c128-n64]"])
    by = {b["name"]: b["extra_info"]["gpu"] for b in doc["benchmarks"]}
    assert by["test_generate[qwen3-32b-c128-n64]"]["uuid"] == "GPU-1aaa"
    assert by["test_generate[gpt-oss-20b-c512-n64]"]["index"] == 0
    mi = doc["machine_info"]
    assert [(g["worker"], g["index"], g["uuid"]) for g in mi["gpus"]] == [("gw0", 0, "GPU-0aaa"), ("gw1", 1, "GPU-1aaa")]
    assert mi["gpus"][0]["memory_total_bytes"] == 150  # the worker's session identity is kept
    assert mi["gpu"]["name"] == "NVIDIA H200" and not mi["gpu_names_differ"]
    assert mi["node"] == "host" and mi["torch_version"] == "2.13"
    assert mi["moeperf_xdist_workers"] == ["gw0", "gw1"]
    assert doc["commit_info"] == {"id": "abc"}
    assert doc["moeperf_failed"] == [{"worker": "gw0", "fullname": "x", "case": "gpt-oss-20b-c2048-n64",
                                      "error": "CUDA out of memory"}]
    from pytest_moeperf.results.documents import validate_document

    validate_document(doc, "merged")


def test_merge_drops_the_xdist_group_suffix_that_pytest_benchmark_5_2_keeps():
    """Under --dist loadgroup pytest-benchmark 5.2 stores ``...[case]@moeperf-MODEL`` as fullname;
    a baseline measured without xdist has no suffix, and the gate matches runs by fullname."""
    case = _case("gpt-oss-20b-c128-n64", "gw0", 0)
    plain = case["benchmark"]["fullname"]
    case["benchmark"]["fullname"] = plain + "@moeperf-gpt-oss-20b"
    failed = {"type": "failed", "fullname": "benchmarks/t.py::test_generate[x]@moeperf-gpt-oss-20b", "case": "x",
              "error": "e"}
    doc = gpu_assign.merge_worker_records({"gw0": [_session(0), case, failed]}, {}, {})
    assert [b["fullname"] for b in doc["benchmarks"]] == [plain]
    assert doc["moeperf_failed"][0]["fullname"] == "benchmarks/t.py::test_generate[x]"
    # only the plugin's own groups: an '@' that is part of a parameter id stays
    assert gpu_assign.without_xdist_group("t.py::test[a@b]") == "t.py::test[a@b]"


def test_merge_newest_record_wins_and_cpu_cases_get_worker_identity():
    old = _case("tiny-moe-c64-n4", "gw0", 0, rounds=(9.0, 9.0))
    new = _case("tiny-moe-c64-n4", "gw0", 0, rounds=(0.1, 0.1))
    cpu = {"type": "case", "benchmark": {**_case("tiny-dense-c64-n4", "x", 0)["benchmark"], "extra_info": {}}}
    doc = gpu_assign.merge_worker_records({"gw0": [old, new], "gw1": [cpu]})
    by = {b["name"]: b for b in doc["benchmarks"]}
    assert by["test_generate[tiny-moe-c64-n4]"]["stats"]["max"] == 0.1
    assert by["test_generate[tiny-dense-c64-n4]"]["extra_info"]["gpu"] == {"worker": "gw1", "index": None,
                                                                           "uuid": None, "name": None}


def test_read_records_from_offset_skips_earlier_runs_and_torn_line(tmp_path):
    log = tmp_path / "r.gw0.jsonl"
    log.write_text(json.dumps({"type": "case", "run": 1}) + "\n")
    offset = log.stat().st_size
    with log.open("a") as fh:
        fh.write(json.dumps({"type": "case", "run": 2}) + "\n" + '{"type": "ca')
    assert [r["run"] for r in gpu_assign.read_records(str(log), offset)] == [2]
    assert len(gpu_assign.read_records(str(log))) == 2
    assert gpu_assign.read_records(str(tmp_path / "missing.jsonl")) == []


# --- tensor parallelism: sums and rank-0 report (pure) --------------------------------------------

def _rank(rank, peak, energy):
    return {"rank": rank, "uuid": f"GPU-{rank}", "name": "NVIDIA H200", "weights_bytes": 100,
            "peak_allocated_bytes": peak, "peak_reserved_bytes": peak + 10, "energy_j": energy, "energy_s": 6.0,
            "energy_unavailable": None if energy is not None else "NVML init failed"}


def test_combine_ranks_sums_and_keeps_per_gpu():
    c = tensor_parallel.combine_ranks([_rank(1, 300, 200.0), _rank(0, 200, 100.0)])
    assert c["tp_size"] == 2 and c["weights_bytes"] == 200
    assert c["peak_allocated_bytes"] == 500 and c["peak_reserved_bytes"] == 520
    assert c["energy_total_j"] == 300.0 and c["energy_unavailable"] is None
    assert [r["rank"] for r in c["per_gpu"]] == [0, 1]


def test_combine_ranks_refuses_a_partial_energy_sum():
    c = tensor_parallel.combine_ranks([_rank(0, 200, 100.0), _rank(1, 300, None)])
    assert c["energy_total_j"] is None and "rank 1: NVML init failed" in c["energy_unavailable"]


def test_rank0_extra_info_and_document():
    from pytest_moeperf.model.cases import Case
    from pytest_moeperf.results.documents import validate_document

    info = {"model": "gpt-oss-120b", "params_active": 5_130_000_000, "decode_tokens_per_s": 100.0,
            "peak_allocated_bytes": 1, "samples": {"ttft_ms": [1.0, 2.0]}, "energy_j": None}
    combined = tensor_parallel.combine_ranks([_rank(0, 40e9, 300.0), _rank(1, 40e9, 300.0)])
    extra = tensor_parallel.tp_extra_info(info, combined, measured_rounds=10, tokens=640)
    assert extra["peak_allocated_bytes"] == 80e9 and extra["tp_size"] == 2 and len(extra["per_gpu"]) == 2
    assert extra["energy_j"] == pytest.approx(60.0)  # 600 J over 10 rounds
    assert extra["tokens_per_j"] == pytest.approx(640 / 600)
    assert extra["j_per_1k_tokens"] == pytest.approx(1000 * 600 / 640)
    assert extra["tokens_per_s_per_gb"] == pytest.approx(100.0 / 80.0)
    assert extra["samples"]["energy_j"] == [pytest.approx(60.0)] and extra["samples"]["ttft_ms"] == [1.0, 2.0]
    bench = tensor_parallel.tp_benchmark(Case("gpt-oss-120b", 128, 64), extra, [0.5, 0.6], 2)
    assert bench["name"] == "test_generate[gpt-oss-120b-c128-n64-tp2]"
    assert bench["fullname"].endswith("[gpt-oss-120b-c128-n64-tp2]") and bench["stats"]["rounds"] == 2
    validate_document(tensor_parallel.rank0_document([bench], {"tp_size": 2}), "tp")


def test_gpt_oss_120b_preset_is_the_published_architecture():
    from pytest_moeperf.model.presets import count_params, get_preset

    cfg = dict(get_preset("gpt-oss-120b").config_kwargs)
    assert (cfg["num_hidden_layers"], cfg["num_local_experts"], cfg["num_experts_per_tok"]) == (36, 128, 4)
    counts = count_params("gpt-oss-120b")  # model card: 116.83 B total, 5.13 B active
    assert counts.total / 1e9 == pytest.approx(116.83, abs=0.01)
    assert counts.active / 1e9 == pytest.approx(5.13, abs=0.01)


# --- a real pytest-xdist run on the CPU presets -------------------------------------------------

@pytest.fixture(scope="module")
def xdist_run(tmp_path_factory):
    pytest.importorskip("xdist")
    d = tmp_path_factory.mktemp("xdist_run")
    (d / "benchmarks").mkdir()
    (d / "benchmarks" / "test_deployment.py").write_text(
        (ROOT / "benchmarks" / "test_deployment.py").read_text(encoding="utf-8"), encoding="utf-8")
    log, merged = d / "r.jsonl", d / "merged.json"
    (d / "r.gw0.jsonl").write_text(json.dumps(_case("stale-c1-n2", "gw0", 0)) + "\n")  # an earlier run's case
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "xdist", "-n", "2", "--dist", "loadgroup",
         "--moeperf-models", "tiny-moe,tiny-dense", "--moeperf-contexts", "64", "--moeperf-rounds", "2",
         "--moeperf-new-tokens", "4", "--moeperf-gate", "off", "--moeperf-results", str(log),
         "--benchmark-json", str(merged), "benchmarks"],
        cwd=d, capture_output=True, text=True, timeout=240)
    return {"dir": d, "proc": proc, "json": merged, "out": proc.stdout + proc.stderr}


@pytest.mark.e2e
def test_xdist_run_merges_both_cases_with_every_required_key(xdist_run):
    assert xdist_run["proc"].returncode == 0, xdist_run["out"][-4000:]
    doc = json.loads(xdist_run["json"].read_text())
    by = {b["name"]: b for b in doc["benchmarks"]}
    assert set(by) == {"test_generate[tiny-moe-c64-n4]", "test_generate[tiny-dense-c64-n4]"}  # not the stale case
    workers = set()
    for name, bench in by.items():
        extra = bench["extra_info"]
        missing = [k for k in schema.REQUIRED_KEYS if k not in extra]
        assert not missing, (name, missing)
        assert bench["stats"]["rounds"] == 2 and len(bench["stats"]["data"]) == 2 and extra["rounds"] == 2
        assert extra["tpot_ms"] > 0 and extra["samples"]["ttft_ms"]
        gpu = extra["gpu"]
        assert gpu["device"] == "cpu" and gpu["index"] is None and gpu["worker"] in ("gw0", "gw1")
        workers.add(gpu["worker"])
    assert workers == {"gw0", "gw1"}  # loadgroup: one model per worker
    mi = doc["machine_info"]
    assert mi["moeperf_version"] and mi["torch_version"] and len(mi["gpus"]) == 2
    assert (xdist_run["dir"] / "r.gw0.jsonl").exists() and (xdist_run["dir"] / "r.gw1.jsonl").exists()
    out = xdist_run["out"]
    assert "moeperf deployment metrics" in out and "tiny-moe-c64-n4" in out
    assert "2 cases merged into" in out


@pytest.mark.e2e
def test_merged_json_is_read_by_compare_and_report(xdist_run, tmp_path):
    path = str(xdist_run["json"])
    proc = subprocess.run([sys.executable, "-m", "pytest_moeperf", "compare", path, path],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "pytest_moeperf", "report", path, "-o", str(tmp_path / "rep")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "tiny-moe" in text and "tiny-dense" in text


@pytest.mark.e2e
def test_more_workers_than_listed_gpus_is_a_usage_error(tmp_path):
    pytest.importorskip("xdist")
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "xdist", "-n", "2",
                           "--moeperf-gpus", "0", "test_x.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, out
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and "2 workers but 1 GPU(s)" in errors[0], out
    assert "Traceback" not in out


# The gate on the merged cases of an xdist run: tests/test_gate_run.py (same verdicts as a plain run).


def test_moe_presets_shard_their_experts_and_dense_ones_use_their_tp_plan():
    # chosen by what each plan shards, for the installed transformers: GptOss has no TP plan in
    # 5.17 and one that shards only the embedding in 5.24; tp_plan="auto" alone would replicate
    # every expert on every GPU (gpt-oss-120b: 234 GB per H200, which does not fit)
    from pytest_moeperf.model.presets import get_preset

    assert tensor_parallel.uses_expert_parallel(get_preset("gpt-oss-120b").make_config())
    assert tensor_parallel.uses_expert_parallel(get_preset("tiny-moe").make_config())
    for dense in ("qwen3-32b", "yi-34b", "tiny-dense"):
        assert not tensor_parallel.uses_expert_parallel(get_preset(dense).make_config())


@pytest.mark.parametrize("ep, tp, expected", [
    ({"layers.*.mlp.experts.gate_up_proj": "grouped_gemm"}, {"embed_tokens": "embedding_rowwise"}, True),
    ({"layers.*.mlp.experts": "ep_dispatch_experts"}, None, True),
    ({"layers.*.mlp.experts": "ep_dispatch_experts"}, {"layers.*.mlp.experts.down_proj": "local_rowwise"}, False),
    (None, {"layers.*.self_attn.q_proj": "colwise"}, False),
    ({"layers.*.mlp.router": "ep_router"}, None, False),  # a router rule alone splits no expert
])
def test_expert_parallel_is_chosen_by_what_the_plans_shard(ep, tp, expected):
    class Config:
        base_model_ep_plan = ep
        base_model_tp_plan = tp

    assert tensor_parallel.uses_expert_parallel(Config()) is expected


TP_SCRIPT = """
import json, sys, torch, torch.distributed as dist
dist.init_process_group("gloo")
from pytest_moeperf.parallel.tensor_parallel import load_tp_model, uses_expert_parallel
out = open(f"rank{dist.get_rank()}.jsonl", "w")  # one file a rank: their stdout lines interleave
for name in sys.argv[1:]:
    loaded = load_tp_model(name, "fp32", None, dist.get_world_size(), "cpu")
    local = {n: list((p.to_local() if hasattr(p, "to_local") else p).shape)
             for n, p in loaded.model.named_parameters() if ".layers.0." in n}
    with torch.no_grad():
        logits = loaded.model(torch.tensor([[1, 2, 3, 4]])).logits[0, -1, :4].tolist()
    plan = "expert" if uses_expert_parallel(loaded.model.config) else "tensor"
    out.write(json.dumps({"model": name, "rank": dist.get_rank(), "plan": plan, "local": local,
                          "logits": logits}) + "\\n")
out.close()
dist.destroy_process_group()
"""


@pytest.mark.e2e
def test_two_gloo_ranks_split_the_moe_experts_and_the_dense_layers(tmp_path):
    # the real load under torchrun (2 CPU ranks, gloo), with the installed transformers: each
    # rank holds half of tiny-moe's 4 experts (attention whole), and a half of tiny-dense's q_proj
    script = tmp_path / "tp.py"
    script.write_text(TP_SCRIPT)
    for attempt in (1, 2):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               str(script), "tiny-moe", "tiny-dense"], capture_output=True, text=True, timeout=300,
                               cwd=tmp_path)
        out = proc.stdout + proc.stderr
        # once in a full suite on 2 busy cores, a gloo rank aborted in C++ teardown ("terminate called
        # without an active exception", the agent then SIGTERMs the other): run it again once, for
        # that abort only; any other failure, or the same one twice, fails here
        if proc.returncode == 0 or "terminate called without an active exception" not in out:
            break
    assert proc.returncode == 0, out[-4000:]
    results = [json.loads(ln) for r in (0, 1) for ln in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()]
    by = {(r["model"], r["rank"]): r for r in results}
    assert set(by) == {(m, r) for m in ("tiny-moe", "tiny-dense") for r in (0, 1)}, out[-4000:]
    for rank in (0, 1):
        moe, dense = by["tiny-moe", rank], by["tiny-dense", rank]
        assert moe["plan"] == "expert" and dense["plan"] == "tensor"
        assert moe["local"]["model.layers.0.mlp.experts.gate_up_proj"][0] == 2  # 4 experts / 2 ranks
        assert moe["local"]["model.layers.0.mlp.experts.down_proj"][0] == 2
        assert moe["local"]["model.layers.0.self_attn.q_proj.weight"] == [64, 64]  # replicated
        assert dense["local"]["model.layers.0.self_attn.q_proj.weight"] == [32, 64]  # colwise: 64 rows / 2
    for model in ("tiny-moe", "tiny-dense"):  # the ranks agree on the output: the collectives ran
        assert by[model, 0]["logits"] == pytest.approx(by[model, 1]["logits"], rel=1e-5, abs=1e-6)
