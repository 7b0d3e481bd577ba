"""Independent checks of the suite's numbers on a GPU; writes one JSON document.

Not part of the product: a minimal, separate measurement to hold the suite to account.
  1. truth: plain ``generate`` timed with synchronize + perf_counter (no stopping criterion,
     no suite code in the timed path) -> median E2E and 1-token TTFT, to compare with the
     suite's medians for the same case;
  2. per-token timing cost: rounds with and without the suite's token clock, interleaved;
  3. energy: NVML's total-energy counter against 10 ms instant-power sampling, same windows;
  4. device-to-device copy bandwidth (the roofline's ceiling).

usage: python tools/gpu_validate.py --model gpt-oss-20b --context 2048 --new-tokens 64 --out validate.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

sys.path.insert(0, ".")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt-oss-20b")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--energy-windows", type=int, default=3)
    ap.add_argument("--energy-window-s", type=float, default=6.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    from pytest_moeperf.cases import Case
    from pytest_moeperf.loading import load_model
    from pytest_moeperf.measure import CaseRunner, MeasureSettings

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out: dict = {"model": args.model, "context": args.context, "new_tokens": args.new_tokens}
    loaded = load_model(args.model, device=args.device, dtype="bf16")
    out["weights_bytes"] = loaded.weights_bytes
    case = Case(args.model, args.context, args.new_tokens)
    runner = CaseRunner(loaded, case, MeasureSettings())  # used only for its exact context ids
    ids, mask = runner.input_ids, runner.attention_mask
    model = loaded.model
    n = args.new_tokens
    base = dict(eos_token_id=runner.gen_kwargs["eos_token_id"], pad_token_id=runner.gen_kwargs["pad_token_id"],
                do_sample=False, temperature=None, top_p=None, top_k=None)

    def plain(new):
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            o = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, **base)
        sync()
        assert o.shape[1] - ids.shape[1] == new
        return (time.perf_counter() - t0) * 1000.0

    plain(n)
    plain(n)  # warm
    e2e = [plain(n) for _ in range(args.rounds)]
    ttft1 = [plain(1) for _ in range(args.rounds)]
    out["independent"] = {"e2e_ms_median": statistics.median(e2e), "e2e_ms": e2e,
                          "ttft_1token_ms_median": statistics.median(ttft1), "ttft_1token_ms": ttft1}

    # per-token clock overhead: interleave suite rounds with and without the clock
    with_clock, without = [], []
    for i in range(args.rounds):
        with_clock.append(runner._generate(i, with_clock=True)[0].e2e_ms)
        without.append(runner._generate(i, with_clock=False)[0].e2e_ms)
    out["token_clock"] = {"with_ms_median": statistics.median(with_clock), "without_ms_median": statistics.median(without),
                          "overhead_pct": 100.0 * (statistics.median(with_clock) / statistics.median(without) - 1),
                          "with_ms": with_clock, "without_ms": without}

    if cuda:
        from pytest_moeperf.energy import EnergyMeter, NvmlDevice, PowerSampler

        dev = NvmlDevice()
        meter = EnergyMeter(dev)
        windows = []
        for _ in range(args.energy_windows):
            sync()
            with PowerSampler(dev, interval_s=0.01) as sampler:
                start = meter.begin_window()
                rounds = 0
                while time.perf_counter() - start.t_s < args.energy_window_s:
                    plain(n)
                    rounds += 1
                w = meter.end_window(start, rounds=rounds, tokens=rounds * n)
            sampled = sampler.energy_j()
            windows.append({"duration_s": w.duration_s, "counter_j": w.energy_j, "sampled_10ms_j": sampled,
                            "samples": len(sampler.samples),
                            "diff_pct": 100.0 * (sampled / w.energy_j - 1) if w.energy_j else None})
        out["energy_crosscheck"] = windows
        from pytest_moeperf.roofline import measure_copy_bandwidth

        out["copy_bandwidth_bytes_per_s"] = measure_copy_bandwidth()
        out["gpu"] = dev.identity()
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(json.dumps({k: v for k, v in out.items() if k not in ("gpu",)}, default=str)[:3000])


if __name__ == "__main__":
    main()
