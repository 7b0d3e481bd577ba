"""Tensor (dense) and expert (MoE) parallelism under torchrun (ran on 2 x H200: docs/multigpu.md).

``python -m torch.distributed.run --nproc-per-node N -m pytest_moeperf.parallel.tensor_parallel --model M``.
Nothing here imports torch, transformers or pynvml at import time."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone

from pytest_moeperf.parallel.assign import _benchmark_version, stats_dict


# =============================================================================================
# tensor (dense) and expert (MoE) parallelism under torchrun (ran on 2 x H200: docs/multigpu.md)
# =============================================================================================

def combine_ranks(per_rank: list[dict]) -> dict:
    """Sum per-GPU figures of one TP case (rank 0 reports them); keeps the per-GPU list.

    ``per_rank``: one dict per rank with rank, uuid, name, weights_bytes, peak_allocated_bytes,
    peak_reserved_bytes, energy_j (None where NVML failed), energy_s, energy_unavailable.
    Allocator peaks are per-process peaks and need not coincide in time: their sum is an upper
    bound of the simultaneous total (the figure that must fit the GPUs). Energy is summed only
    when every GPU has it: a partial sum would understate the run.
    """
    ranks = sorted(per_rank, key=lambda r: r["rank"])

    def total(key):
        vals = [r.get(key) for r in ranks]
        return None if any(v is None for v in vals) else sum(vals)

    missing = [f"rank {r['rank']}: {r.get('energy_unavailable') or 'no energy'}" for r in ranks if r.get("energy_j") is None]
    return {
        "tp_size": len(ranks),
        "weights_bytes": total("weights_bytes"),
        "peak_allocated_bytes": total("peak_allocated_bytes"),
        "peak_reserved_bytes": total("peak_reserved_bytes"),
        "energy_total_j": total("energy_j"),
        "energy_unavailable": "; ".join(missing) or None,
        "per_gpu": ranks,
    }


def tp_extra_info(info: dict, combined: dict, measured_rounds: int, tokens: int) -> dict:
    """The rank-0 extra_info: the single-GPU keys replaced by the sums over the TP group."""
    from pytest_moeperf.metrics import derived

    out = dict(info)
    out["tp_size"] = combined["tp_size"]
    out["per_gpu"] = combined["per_gpu"]
    for key in ("weights_bytes", "peak_allocated_bytes", "peak_reserved_bytes"):
        out[key] = combined[key]
    energy = combined["energy_total_j"]
    out["energy_unavailable"] = combined["energy_unavailable"]
    if energy is not None and energy > 0 and measured_rounds and tokens:
        out["energy_j"] = derived.energy_per_round_j(energy, measured_rounds)
        out["tokens_per_j"] = derived.tokens_per_j(tokens, energy)
        out["j_per_1k_tokens"] = derived.j_per_1k_tokens(tokens, energy)
        out["energy_method"] = ("NVML total-energy counter per GPU (by UUID) over all measured rounds, "
                                "summed over the TP group; gross board energy")
    else:
        out["energy_j"] = out["tokens_per_j"] = out["j_per_1k_tokens"] = None
    eff = derived.efficiency(out)  # the group's summed peak memory and energy, as on one GPU
    out["ape_energy"], out["tokens_per_s_per_gb"] = eff["ape_energy"], eff["tokens_per_s_per_gb"]
    samples = dict(out.get("samples") or {})
    samples["energy_j"] = [out["energy_j"]] if out.get("energy_j") is not None else []
    samples["tokens_per_j"] = [out["tokens_per_j"]] if out.get("tokens_per_j") is not None else []
    samples["j_per_1k_tokens"] = [out["j_per_1k_tokens"]] if out.get("j_per_1k_tokens") is not None else []
    out["samples"] = samples
    return out


def tp_benchmark(case, extra_info: dict, durations_s: list[float], tp_size: int) -> dict:
    """One pytest-benchmark entry; the name carries -tpN so it never matches a single-GPU baseline."""
    from pytest_moeperf.model.cases import TEST_NODE

    case_id = f"{case.case_id}-tp{tp_size}"
    return {"group": None, "name": f"test_generate[{case_id}]", "fullname": f"{TEST_NODE}[{case_id}]",
            "params": {"moeperf_case": case_id}, "param": case_id, "extra_info": extra_info,
            "options": {"timer": "time.perf_counter", "moeperf_tp": True}, "stats": stats_dict(durations_s)}


def rank0_document(benchmarks: list[dict], machine_info: dict) -> dict:
    return {"machine_info": machine_info, "commit_info": {}, "benchmarks": benchmarks,
            "datetime": datetime.now(timezone.utc).isoformat(), "version": _benchmark_version()}


def _tp_args(argv):
    p = argparse.ArgumentParser(prog="python -m torch.distributed.run --nproc-per-node N -m pytest_moeperf.parallel.tensor_parallel",
                                description="tensor-parallel deployment benchmark of one model over the GPUs of torchrun")
    p.add_argument("--model", default="gpt-oss-120b", help="preset (default gpt-oss-120b)")
    p.add_argument("--weights", default=None, help="checkpoint path or hub id (default: seeded random weights)")
    p.add_argument("--contexts", default="128,512,1024,2048")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="tp.json", help="pytest-benchmark JSON written by rank 0")
    return p.parse_args(argv)


def _shards_experts(plan) -> bool:
    """Whether a transformers sharding plan (module pattern -> style) splits the MoE experts."""
    return any("experts" in str(pattern).split(".") for pattern in (plan or {}))


def uses_expert_parallel(config) -> bool:
    """True for MoE configs whose experts only the expert-parallel plan splits across the ranks.

    Chosen by what each plan shards, not by which plans exist: GptOss in transformers 5.17 has no
    ``base_model_tp_plan``; in 5.24 its TP plan shards only ``embed_tokens``, so tp_plan="auto"
    alone would replicate the 114 B expert weights of gpt-oss-120b on every GPU. Its
    ``base_model_ep_plan`` splits the experts (grouped_gemm), attention and router replicated.
    """
    return _shards_experts(getattr(config, "base_model_ep_plan", None)) and not _shards_experts(
        getattr(config, "base_model_tp_plan", None))


def distributed_config(config, tp_size: int):
    """transformers' DistributedConfig for ``tp_size`` ranks: the expert-parallel plan for MoE
    configs where it is what splits the experts (uses_expert_parallel), else the TP plan.

    transformers 5.24 takes ``ep_size`` (``enable_expert_parallel`` is deprecated there and its
    ``tp_plan={}`` is refused with ``tp_size > 1``): experts split by the EP plan, the dense modules
    by the TP plan (GptOss: the embedding, row-wise). 5.17 has only ``enable_expert_parallel``:
    experts split, everything else replicated.
    """
    import dataclasses

    from transformers.distributed.configuration_utils import DistributedConfig

    if not uses_expert_parallel(config):
        return DistributedConfig(tp_plan="auto", tp_size=tp_size)
    if "ep_size" in {f.name for f in dataclasses.fields(DistributedConfig)}:
        return DistributedConfig(tp_plan="auto", tp_size=tp_size, ep_size=tp_size)
    return DistributedConfig(tp_plan="auto", tp_size=tp_size, enable_expert_parallel=True)


def load_tp_model(name: str, dtype: str, checkpoint: str | None, tp_size: int, device: str, seed: int = 0):
    """A LoadedModel sharded with transformers' TP plan (from_pretrained + DistributedConfig(tp_plan="auto")).

    from_config takes no TP arguments in transformers 5.17; random weights go through
    from_pretrained(None, config=..., state_dict={}): every weight is missing, so each rank
    initialises its own shard.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_moeperf.model.loading import LoadedModel, torch_dtype
    from pytest_moeperf.model.presets import count_params, get_preset
    from pytest_moeperf.model.tokenizer import get_tokenizer

    preset = get_preset(name)
    dist_cfg = distributed_config(preset.make_config(), tp_size)
    torch.manual_seed(seed)
    before = torch.cuda.memory_allocated() if device == "cuda" else 0
    t0 = time.perf_counter()
    if checkpoint:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype(dtype), distributed_config=dist_cfg)
    else:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        config = preset.make_config()
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # the Auto class refuses a None path
        model = cls.from_pretrained(None, config=config, state_dict={}, dtype=torch_dtype(dtype),
                                    distributed_config=dist_cfg)
    model.eval()
    if device == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    weights = (torch.cuda.memory_allocated() - before) if device == "cuda" else sum(
        (p.to_local() if hasattr(p, "to_local") else p).numel() * p.element_size() for p in model.parameters())
    return LoadedModel(preset=preset, model=model, tokenizer=get_tokenizer(preset.family, preset.vocab_size, checkpoint),
                       device=device, dtype=dtype, weights="checkpoint" if checkpoint else "random",
                       checkpoint=checkpoint, params=count_params(name), weights_bytes=int(weights), load_s=load_s,
                       experts=None)


def _rank_energy(device: str, local_rank: int):
    """(energy meter, GPU UUID, GPU name, why energy is not measured) of this rank's GPU."""
    if device != "cuda":
        return None, None, None, "no GPU: device is the CPU"
    import torch

    from pytest_moeperf.device.energy import EnergyMeter
    from pytest_moeperf.device.nvml import NvmlDevice

    props = torch.cuda.get_device_properties(local_rank)
    nv_uuid = f"GPU-{props.uuid}" if getattr(props, "uuid", None) else None
    try:
        gpu = NvmlDevice(uuid=nv_uuid) if nv_uuid else NvmlDevice()
        return EnergyMeter(gpu), nv_uuid, gpu.identity().get("name"), None
    except Exception as exc:
        return None, nv_uuid, None, f"{type(exc).__name__}: {exc}"


def _lockstep_rounds(runner, rounds: int, meter, device: str):
    """Every rank's measured rounds after one barrier: (round durations in s, energy window or None)."""
    import torch
    import torch.distributed as dist

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    dist.barrier()
    start = meter.begin_window() if meter is not None else None
    durations = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        runner.round()
        durations.append(time.perf_counter() - t0)
    if device == "cuda":
        torch.cuda.synchronize()
    return durations, (meter.end_window(start) if meter is not None else None)


def _write_document(path: str, benchmarks: list, world: int, nv_name: str | None, nv_uuid: str | None) -> None:
    """Rank 0's pytest-benchmark document of the TP run."""
    import torch

    from pytest_moeperf import __version__

    mi = {"moeperf_version": __version__, "torch_version": torch.__version__, "tp_size": world,
          "gpu": {"name": nv_name, "uuid": nv_uuid} if nv_name else None,
          "transformers_version": sys.modules["transformers"].__version__}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(rank0_document(benchmarks, mi), fh, indent=2, default=str)
    print(f"wrote {path}", flush=True)


def main(argv=None) -> int:
    """torchrun entry: every rank runs the same rounds (TP collectives need them in lockstep)."""
    import torch
    import torch.distributed as dist

    from pytest_moeperf.model.cases import Case
    from pytest_moeperf.measure.measure import CaseRunner, MeasureSettings

    args = _tp_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    meter, nv_uuid, nv_name, energy_unavailable = _rank_energy(device, local_rank)
    loaded = load_tp_model(args.model, args.dtype, args.weights, world, device, args.seed)
    # which of transformers' plans sharded the model: "expert" (MoE experts split across ranks,
    # attention replicated) or "tensor" (the model's base_model_tp_plan)
    plan = "expert" if uses_expert_parallel(loaded.model.config) else "tensor"
    benchmarks = []
    for ctx in [int(c) for c in args.contexts.split(",")]:
        case = Case(args.model, ctx, args.new_tokens, args.dtype)
        runner = CaseRunner(loaded, case, MeasureSettings(rounds=args.rounds, warmup_rounds=0, seed=args.seed),
                            energy_unavailable=energy_unavailable or "summed over GPUs below")
        runner.prime()
        durations, window = _lockstep_rounds(runner, args.rounds, meter, device)
        info = runner.extra_info(f"{nv_name or device} x{world} (TP)")
        info["parallel_plan"] = plan
        mine = {"rank": rank, "local_rank": local_rank, "uuid": nv_uuid, "name": nv_name,
                "weights_bytes": loaded.weights_bytes if device == "cuda" else None,
                "peak_allocated_bytes": info.get("peak_allocated_bytes"),
                "peak_reserved_bytes": info.get("peak_reserved_bytes"),
                "energy_j": window.energy_j if window is not None else None,
                "energy_s": window.duration_s if window is not None else None,
                "energy_unavailable": energy_unavailable}
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        if rank == 0:
            tokens = sum(r.new_tokens * r.batch_size for r in runner.rounds_done)
            extra = tp_extra_info(info, combine_ranks(gathered), len(runner.rounds_done), tokens)
            benchmarks.append(tp_benchmark(case, extra, durations, world))
            print(f"{benchmarks[-1]['name']}: tpot_ms={extra['tpot_ms']:.3f} peak_allocated_bytes(sum)="
                  f"{extra['peak_allocated_bytes']} energy_j={extra['energy_j']}", flush=True)
    if rank == 0:
        _write_document(args.json, benchmarks, world, nv_name, nv_uuid)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
