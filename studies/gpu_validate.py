"""Independent checks of the suite's numbers on a GPU; writes one JSON document.

Not part of the product: a minimal, separate measurement to hold the suite to account.
  1. truth: plain ``generate`` timed with synchronize + perf_counter (no stopping criterion,
     no returned dict, no suite code in the timed path) against the suite's own round
     (``CaseRunner._generate``, token clock on) and the same round with the clock off. The
     three are interleaved round by round, in a rotating order, so the drift and jumps of a
     host-bound GPU fall on all three alike (run one after another, they did not: on the
     H200 the eager medians then differed by 22%);
  2. per-token timing cost: suite rounds with the clock against without, from (1), for the
     default clock (CUDA events on a GPU) and, on a GPU, the per-token device sync too, with
     the TTFT and TPOT each clock reports;
  3. eager only: 1-token TTFT of plain ``generate`` (a static cache of another length would
     recompile);
  4. energy: NVML's total-energy counter against 10 ms instant-power sampling, same windows;
  5. device-to-device copy bandwidth (the roofline's ceiling).

usage: python studies/gpu_validate.py --model gpt-oss-20b --context 2048 --new-tokens 64 \
           [--backend static] --out validate.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

sys.path.insert(0, ".")


def _args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt-oss-20b")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--backend", default="eager", choices=("eager", "static"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--energy-windows", type=int, default=3)
    ap.add_argument("--energy-window-s", type=float, default=6.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    return ap.parse_args()


def _interleaved_rounds(rounds: int, plain, n: int, runner, runners: dict):
    """Each kind of round in rotating order (no kind always runs first): e2e, TTFT and TPOT samples."""
    kinds = ("plain", *runners, "suite_no_clock")
    samples = {k: [] for k in kinds}
    ttft = {k: [] for k in runners}
    tpot = {k: [] for k in runners}
    for i in range(rounds):
        for j in range(len(kinds)):
            kind = kinds[(i + j) % len(kinds)]
            if kind == "plain":
                samples[kind].append(plain(n))
            elif kind == "suite_no_clock":
                samples[kind].append(runner._generate(i, with_clock=False)[0].e2e_ms)
            else:
                timing = runners[kind]._generate(i)[0]
                samples[kind].append(timing.e2e_ms)
                ttft[kind].append(timing.ttft_ms)
                tpot[kind].append(timing.tpot_ms)
        print(f"round {i}: " + ", ".join(f"{k} {samples[k][-1]:.1f} ms" for k in kinds), flush=True)
    return samples, ttft, tpot


def _summaries(out: dict, samples: dict, ttft: dict, tpot: dict, clock_kind: str) -> None:
    """The suite's figures against the plain generate calls, and each token clock's overhead."""
    med = {k: statistics.median(v) for k, v in samples.items()}
    suite_ttft, suite_tpot = ttft["suite_clock"], tpot["suite_clock"]
    out["truth"] = {
        "plain_e2e_ms_median": med["plain"], "suite_e2e_ms_median": med["suite_clock"],
        "suite_minus_plain_pct": 100.0 * (med["suite_clock"] / med["plain"] - 1),
        "suite_ttft_ms_median": statistics.median(suite_ttft), "suite_tpot_ms_median": statistics.median(suite_tpot),
        "e2e_ms": samples,
    }
    out["token_clock"] = {"kind": clock_kind, "with_ms_median": med["suite_clock"],
                          "without_ms_median": med["suite_no_clock"],
                          "overhead_pct": 100.0 * (med["suite_clock"] / med["suite_no_clock"] - 1)}
    if "suite_sync_clock" in ttft:
        out["sync_clock"] = {
            "with_ms_median": med["suite_sync_clock"],
            "overhead_pct": 100.0 * (med["suite_sync_clock"] / med["suite_no_clock"] - 1),
            "ttft_ms_median": statistics.median(ttft["suite_sync_clock"]),
            "tpot_ms_median": statistics.median(tpot["suite_sync_clock"]),
            "event_minus_sync_ttft_pct": 100.0 * (statistics.median(suite_ttft)
                                                  / statistics.median(ttft["suite_sync_clock"]) - 1),
            "event_minus_sync_tpot_pct": 100.0 * (statistics.median(suite_tpot)
                                                  / statistics.median(tpot["suite_sync_clock"]) - 1),
        }


def _energy_crosscheck(out: dict, plain, n: int, windows_n: int, window_s: float, sync) -> None:
    """NVML's energy counter against 10 ms power samples over the same windows; the copy bandwidth."""
    from pytest_moeperf.device.energy import EnergyMeter, NvmlDevice, PowerSampler

    dev = NvmlDevice()
    meter = EnergyMeter(dev)
    windows = []
    for _ in range(windows_n):
        sync()
        with PowerSampler(dev, interval_s=0.01) as sampler:
            start = meter.begin_window()
            rounds = 0
            while time.perf_counter() - start.t_s < window_s:
                plain(n)
                rounds += 1
            w = meter.end_window(start, rounds=rounds, tokens=rounds * n)
        sampled = sampler.energy_j()
        windows.append({"duration_s": w.duration_s, "counter_j": w.energy_j, "sampled_10ms_j": sampled,
                        "samples": len(sampler.samples),
                        "diff_pct": 100.0 * (sampled / w.energy_j - 1) if w.energy_j else None})
    out["energy_crosscheck"] = windows
    from pytest_moeperf.measure.roofline import measure_copy_bandwidth

    out["copy_bandwidth_bytes_per_s"] = measure_copy_bandwidth()
    out["gpu"] = dev.identity()


def main():
    args = _args()
    import torch

    from pytest_moeperf.model.cases import Case
    from pytest_moeperf.model.loading import load_model
    from pytest_moeperf.measure.measure import CaseRunner, MeasureSettings

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out: dict = {"model": args.model, "context": args.context, "new_tokens": args.new_tokens,
                 "backend": args.backend, "rounds": args.rounds}
    loaded = load_model(args.model, device=args.device, dtype="bf16")
    out["weights_bytes"] = loaded.weights_bytes
    case = Case(args.model, args.context, args.new_tokens, backend=args.backend)
    runner = CaseRunner(loaded, case, MeasureSettings())
    ids, mask = runner.input_ids, runner.attention_mask
    model = loaded.model
    n = args.new_tokens
    # the same generation settings as the suite's, minus its clock and its returned dict
    base = {k: v for k, v in runner.gen_kwargs.items()
            if k not in ("max_new_tokens", "min_new_tokens", "stopping_criteria", "return_dict_in_generate")}

    def plain(new):
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            o = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, **base)
        sync()
        assert o.shape[1] - ids.shape[1] == new
        return (time.perf_counter() - t0) * 1000.0

    t0 = time.perf_counter()
    plain(n)
    out["first_call_s"] = time.perf_counter() - t0
    plain(n)
    # the suite's round with each token clock: its default (CUDA events on a GPU) and the
    # per-token device sync, and with no clock at all
    runners = {"suite_clock": runner}
    if cuda:
        runners["suite_sync_clock"] = CaseRunner(loaded, case, MeasureSettings(token_clock="sync"))
    out["token_clock_kind"] = runner.clock.kind
    for r in runners.values():
        r._generate(-1)
    runner._generate(-2, with_clock=False)  # warm every path
    samples, ttft, tpot = _interleaved_rounds(args.rounds, plain, n, runner, runners)
    _summaries(out, samples, ttft, tpot, runner.clock.kind)
    if args.backend == "eager":
        ttft1 = [plain(1) for _ in range(args.rounds)]
        out["independent_ttft_1token_ms_median"] = statistics.median(ttft1)
        out["independent_ttft_1token_ms"] = ttft1
        out["suite_ttft_minus_independent_pct"] = (100.0 * (statistics.median(ttft["suite_clock"])
                                                            / statistics.median(ttft1) - 1))
    if cuda:
        _energy_crosscheck(out, plain, n, args.energy_windows, args.energy_window_s, sync)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps({k: v for k, v in out.items() if k not in ("gpu",)}, default=str)[:3000])


if __name__ == "__main__":
    main()
