"""Prefill vs decode energy of the single-request benchmark (opt-in: --moeperf-energy-split).

Method (as ML.ENERGY and MLPerf's proposed power schema split them): besides the case's full
rounds (prefill + n tokens), energy windows of 1-token rounds (prefill + the first token) run on
the same prompt. Per round, E1 is the 1-token energy and E_n the full round's:
  prefill J per request  = mean(E1) / batch
  decode J per token     = (E_n - mean(E1)) / ((n - 1) * batch), one value per full window
The CV and the 95% CI (Student t) of each are over its windows; the decode CI holds the prefill
mean fixed (its own CI is given beside it). Gross board energy (NVML counter), windows >= 1 s
(the --moeperf-energy-window-s length). Not on the static backend: another generate length is
another static cache shape and a recompile, which would be measured as prefill.
"""

from __future__ import annotations

import time

from pytest_moeperf.metrics.stats import ci95_mean, cv
from pytest_moeperf.measure.case_result import valid_windows

METHOD = ("1-token rounds vs full rounds in energy windows of the same length; prefill = mean 1-token round "
          "energy / batch; decode/token = (full round - mean 1-token round) / ((n - 1) * batch) per full window")


def split_from_windows(one_token_j: list[float], full_j: list[float], new_tokens: int, batch: int) -> dict:
    """Pure: per-round energies of 1-token windows and of full windows -> the split, with CV and CI."""
    if not one_token_j or not full_j or new_tokens < 2:
        return {"unavailable": "need 1-token and full energy windows and >= 2 new tokens"}
    e1 = sum(one_token_j) / len(one_token_j)
    prefill = [e / batch for e in one_token_j]
    decode = [(e - e1) / ((new_tokens - 1) * batch) for e in full_j]
    return {"prefill_j_per_request": e1 / batch, "prefill_j_cv": cv(prefill), "prefill_j_ci95": ci95_mean(prefill),
            "prefill_windows": len(one_token_j),
            "decode_j_per_token": sum(decode) / len(decode), "decode_j_per_token_cv": cv(decode),
            "decode_j_per_token_ci95": ci95_mean(decode), "decode_windows": len(full_j), "method": METHOD}


def measure_split(runner, meter, windows: int, window_s: float) -> dict:
    """Run ``windows`` windows of 1-token rounds after the case's rounds; combine with its full windows."""
    if meter is None:
        return {"unavailable": runner.energy_unavailable or "no energy meter"}
    if runner.case.backend != "eager":
        return {"unavailable": "not on the static backend (a 1-token generate recompiles the static cache)"}
    kwargs = dict(runner.gen_kwargs, max_new_tokens=1, min_new_tokens=1)
    kwargs.pop("stopping_criteria", None)
    per_round = []
    for _ in range(windows):
        runner.sync()
        start, rounds = meter.begin_window(), 0
        while True:
            runner._timed_generate(kwargs)
            rounds += 1
            if time.perf_counter() - start.t_s >= window_s:
                break
        w = meter.end_window(start, rounds=rounds)
        if w.energy_j > 0:
            per_round.append(w.energy_j / rounds)
    full = [w.energy_j / w.rounds for w in valid_windows(runner.windows)]
    return split_from_windows(per_round, full, runner.case.new_tokens, runner.case.batch_size)
