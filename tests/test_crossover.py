"""The MoE vs dense crossover (serving/crossover.py, serving/step_table.py, report/crossover.py): the
interpolated crossing, the bootstrap, the term split, the board facts, and the section on the committed
H200 serving run (baselines/h200-runs/2026-12-02/serving)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.report import crossover as report_crossover
from pytest_moeperf.serving import crossover, step_table
from pytest_moeperf.report.serving_view import group

H200 = Path(__file__).resolve().parent.parent / "baselines" / "h200-runs" / "2026-12-02" / "serving"


def test_crossing_by_hand():
    # between 4 (ratio 1.5) and 16 (0.5): log ratio falls from ln 1.5 to ln 0.5 over ln 4 .. ln 16
    t = math.log(1.5) / (math.log(1.5) - math.log(0.5))
    assert crossover.crossing([1, 4, 16], [2.0, 1.5, 0.5]) == pytest.approx(4 * 4 ** t)
    assert crossover.crossing([1, 4, 16], [2.0, 1.5, 1.1]) is None
    assert crossover.crossing([1, 4], [1.0, 0.5]) == 1


@given(r=st.lists(st.floats(0.05, 20.0), min_size=2, max_size=6))
@settings(max_examples=200, deadline=None)
def test_crossing_properties(r):
    loads = [2.0 ** i for i in range(len(r))]
    at = crossover.crossing(loads, r)
    signs = [x > 1 for x in r if x != 1]
    if at is None:
        assert len(set(signs)) <= 1
    else:
        assert loads[0] <= at <= loads[-1]
        # the same crossing for the inverse ratio (dense / MoE)
        assert crossover.crossing(loads, [1 / x for x in r]) == pytest.approx(at)


def test_replicates_repeats_requests_and_none():
    rng = np.random.default_rng(0)
    est, reps, how = crossover.replicates([{"m": 2.0}, {"m": 4.0}], "m", None, None, rng)
    assert est == 3.0 and how == "2 repeats" and reps.min() >= 2.0 and reps.max() <= 4.0
    x = {"m": 10.0, "samples": {"e2e": [1.0, 2.0, 3.0, 4.0]}}
    est, reps, how = crossover.replicates([x], "m", "e2e", "mean-inverse", rng)
    assert est == 10.0 and how == "one run, within-run" and len(reps) == crossover.N_BOOT
    lo, hi = np.percentile(reps, [2.5, 97.5])
    assert lo < 10.0 < hi
    assert crossover.replicates([{"m": 1.0}], "m", None, None, rng)[1:] == (None, "one run")
    assert crossover.replicates([{}], "m", None, None, rng) == (None, None, "not measured")


def _point(model, arch, users, tokens_s, tpot, j, e2e, uuid="GPU-x"):
    return {"model": model, "architecture": arch, "load_mode": "concurrency", "load_value": users,
            "load_point": f"cc{users}", "context_tokens": 100, "new_tokens": 8, "dtype": "bf16",
            "output_tokens_per_s": tokens_s, "req_tpot_ms_p50": tpot, "j_per_output_token": j, "gpu_uuid": uuid,
            "device_name": "NVIDIA H200", "samples": {"req_e2e_ms": e2e, "req_tpot_ms": [tpot * 0.9, tpot, tpot * 1.1]}}


def test_pair_rows_on_tiny_presets():
    pts = [_point("tiny-moe", "moe", 1, 20.0, 50.0, 1.0, [400, 410, 390]),
           _point("tiny-moe", "moe", 4, 40.0, 100.0, 2.0, [800, 820, 780]),
           _point("tiny-dense", "dense", 1, 10.0, 100.0, 2.0, [800, 810, 790]),
           _point("tiny-dense", "dense", 4, 80.0, 50.0, 1.0, [400, 420, 380])]
    groups = {("tiny-moe", True): pts[:2], ("tiny-dense", True): pts[2:]}
    boards = {"GPU-x": step_table.Board(1e12, "given", 100.0)}
    rows = {r[2]: r for r in crossover.pair_rows(groups, boards)}
    tok = rows["output tokens/s"]
    assert tok[3].startswith("1: 2.00 [") and "4: 0.50 [" in tok[3]
    assert tok[4].startswith("2 users [")  # ln 2 -> ln 0.5 over ln 1 .. ln 4: the middle, 2 users
    assert "MoE behind above it" in tok[4]
    assert rows["J/token"][4].startswith("2 users, MoE behind above it (no interval: one run")
    # the term split sums to the change of MoE - dense cost per token: 1000/40 - 1000/80 - (1000/20 - 1000/10)
    swing = (1000 / 40 - 1000 / 80) - (1000 / 20 - 1000 / 10)
    assert f"ms/token {swing:+.3g}:" in tok[6]


def test_what_moved_sums_to_the_swing():
    boards = {"GPU-x": step_table.Board(1e12, "given", 100.0)}
    m0, m1 = _point("tiny-moe", "moe", 1, 20.0, 50.0, 1.0, [1]), _point("tiny-moe", "moe", 4, 40.0, 100.0, 2.0, [1])
    d0, d1 = _point("tiny-dense", "dense", 1, 10.0, 100.0, 2.0, [1]), _point("tiny-dense", "dense", 4, 80.0, 50.0, 1.0, [1])
    for kind, key in (("ms/token", None), ("ms/step", "req_tpot_ms_p50"), ("J/token", "j_per_output_token")):
        parts = [crossover.costs(x, kind, boards) for x in (m0, m1, d0, d1)]
        total = [sum(p.values()) for p in parts]
        want = [1000 / x["output_tokens_per_s"] if key is None else x[key] for x in (m0, m1, d0, d1)]
        assert total == pytest.approx(want)


def test_model_crossing_names_the_range():
    text = crossover.model_crossing(_point("gpt-oss-20b", "moe", 1, 1, 1, 1, [1]),
                                    _point("qwen3-32b", "dense", 1, 1, 1, 1, [1]))
    assert text.startswith("never within batch 1–1024")
    assert "no preset config" in crossover.model_crossing(_point("my-model", "moe", 1, 1, 1, 1, [1]),
                                                          _point("qwen3-32b", "dense", 1, 1, 1, 1, [1]))


def test_board_nominal_fallback_and_measured_experts():
    x = _point("gpt-oss-20b", "moe", 4, 1, 1, 1, [1], uuid="GPU-unknown")
    assert step_table.board_for(x, {}).bandwidth_source.startswith("nominal 4.8 TB/s")
    x["distinct_experts_at_load"] = 13.3
    x["routing_vs_batch"] = {"by_batch": [{"batch": 1}, {"batch": 2}]}
    assert step_table.measured_experts(x) is None  # the table never reached batch 4
    x["routing_vs_batch"]["by_batch"].append({"batch": 4})
    assert step_table.measured_experts(x) == 13.3


def test_bandwidth_from_without_a_bandwidth_is_one_line(tmp_path):
    doc = tmp_path / "d.json"
    doc.write_text(json.dumps({"benchmarks": [], "machine_info": {}}))
    with pytest.raises(ValueError, match="no case in it measured memory_bandwidth_bytes_per_s"):
        report_crossover.boards([], [str(doc)])


def test_section_on_the_committed_h200_run(tmp_path):
    """The committed run through the report command: the ratio, the crossing and the board facts."""
    from pytest_moeperf.report import cli

    args = argparse.Namespace(results=[str(H200 / "serving-all.json")], against=None, output=str(tmp_path),
                              bandwidth_from=[str(H200 / "split.jsonl")])
    assert cli.run(args) == 0
    md = (tmp_path / "report.md").read_text()
    doc = json.loads((H200 / "serving-all.json").read_text())
    by = {(b["extra_info"]["model"], b["extra_info"]["cuda_graphs"], b["extra_info"]["load_point"]): b["extra_info"]
          for b in doc["benchmarks"]}
    ratio16 = by["gpt-oss-20b", "off", "cc16"]["output_tokens_per_s"] / by["qwen3-32b", "on", "cc16"]["output_tokens_per_s"]
    row = next(line for line in md.splitlines()
               if line.startswith("| gpt-oss-20b (CUDA graphs off) | qwen3-32b (CUDA graphs on) | output tokens/s"))
    assert f"16: {ratio16:.2f} [" in row
    crossing = float(row.split(" | ")[4].split(" users")[0])
    assert 4 < crossing < 16
    split = [json.loads(line) for line in (H200 / "split.jsonl").read_text().splitlines()]
    bw = next(r["benchmark"]["extra_info"]["memory_bandwidth_bytes_per_s"] for r in split if r.get("type") == "case")
    assert f"bandwidth {bw / 1e12:.3f} TB/s, measured on the same board" in md
    assert f"idle power {doc['machine_info']['gpu']['idle_power_w']:.1f} W" in md
    groups = group(doc["benchmarks"])
    assert len(crossover.pair_rows(groups, {})) == 9  # 1 MoE series x 3 dense series x 3 metrics


def test_open_loop_batch_is_at_least_one():
    x = {"load_mode": "rate", "mean_in_flight": 0.23}
    assert step_table.batch_of(x) == 1.0
    assert step_table.batch_of({"load_mode": "rate", "mean_in_flight": 3.4}) == 3.4
    assert step_table.batch_of({"load_mode": "rate"}) is None


def test_report_command_bad_bandwidth_file_is_one_line(tmp_path, capsys):
    from pytest_moeperf.__main__ import main

    missing = tmp_path / "nope.json"
    assert main(["report", str(H200 / "serving-all.json"), "--bandwidth-from", str(missing),
                 "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope.json" in err and "\n" not in err
    assert not (tmp_path / "r").exists()  # nothing written before the inputs were checked


def test_repeats_give_the_interval_and_the_mean():
    a = [_point("tiny-moe", "moe", 1, v, 50.0, 1.0, [1.0, 2.0]) for v in (19.0, 21.0)]
    b = [_point("tiny-moe", "moe", 4, v, 100.0, 2.0, [1.0, 2.0]) for v in (39.0, 41.0)]
    c = [_point("tiny-dense", "dense", 1, v, 100.0, 2.0, [1.0, 2.0]) for v in (9.0, 11.0)]
    d = [_point("tiny-dense", "dense", 4, v, 50.0, 1.0, [1.0, 2.0]) for v in (79.0, 81.0)]
    rows = {r[2]: r for r in crossover.pair_rows({("tiny-moe", True): a + b, ("tiny-dense", True): c + d}, {})}
    tok = rows["output tokens/s"]
    assert tok[3].startswith("1: 2.00 [") and "(2 repeats)" in tok[3]  # 20 / 10 from the repeats' means
    lo, hi = (float(v) for v in tok[3].split("[")[1].split("]")[0].split("–"))
    assert 19 / 11 - 1e-9 <= lo <= 2.0 <= hi <= 21 / 9 + 1e-9  # within the repeats' extreme ratios
    assert "% of resamples cross" in tok[4]
    assert crossover.mean_point(a)["output_tokens_per_s"] == 20.0


def test_ratios_of_exactly_one_do_not_break_the_row():
    pts = [_point(m, a, u, 10.0, 50.0, 1.0, [1.0, 1.0]) for m, a in (("tiny-moe", "moe"), ("tiny-dense", "dense"))
           for u in (1, 4)]
    rows = crossover.pair_rows({("tiny-moe", True): pts[:2], ("tiny-dense", True): pts[2:]}, {})
    assert rows[0][3].startswith("1: 1.00") and rows[0][4].startswith("1 users")


@given(vals=st.lists(st.tuples(st.floats(0.1, 100.0), st.floats(0.1, 100.0)), min_size=2, max_size=4),
       e2e=st.lists(st.floats(1.0, 1e4), min_size=2, max_size=6))
@settings(max_examples=30, deadline=None)
def test_pair_rows_any_values(vals, e2e):
    loads = [2 ** i for i in range(len(vals))]
    moe = [_point("tiny-moe", "moe", u, m, m, m, e2e) for u, (m, _) in zip(loads, vals)]
    dense = [_point("tiny-dense", "dense", u, d, d, d, e2e) for u, (_, d) in zip(loads, vals)]
    boards = {"GPU-x": step_table.Board(1e12, "given", 100.0)}
    for row in crossover.pair_rows({("tiny-moe", True): moe, ("tiny-dense", True): dense}, boards):
        cell = row[4]
        if not cell.startswith("not within"):
            assert loads[0] <= float(cell.split(" users")[0]) <= loads[-1]
