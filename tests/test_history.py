"""History: change points over stored runs (pytest_moeperf.history.history*), the last-stable baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.history import history as h
from pytest_moeperf.gate import history_gate
from pytest_moeperf.metrics import schema

pytest.importorskip("otava.analysis", reason=h.INSTALL_HINT)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "studies"))
import history_rates  # noqa: E402

NAME = "benchmarks/test_deployment.py::test_generate[gpt-oss-20b-c2048-n64-static]"
H200_RUNS = REPO / "baselines" / "h200-runs" / "2026-11-29b"


def bench(tpot: float, name: str = NAME, n: int = 6) -> dict:
    extra = {k: None for k in schema.REQUIRED_KEYS}
    rounds = [tpot * (1 + 0.01 * (i - n / 2) / n) for i in range(n)]
    extra.update(tpot_ms=tpot, decode_tokens_per_s=1000.0 / tpot,
                 samples={"tpot_ms": rounds, "decode_tokens_per_s": [1000.0 / r for r in rounds]})
    return {"name": name.split("::")[-1], "fullname": name, "params": {}, "extra_info": extra,
            "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, "stddev": 0, "rounds": 1}}


def write_run(folder: Path, i: int, tpots: dict[str, float], gpu: str = "NVIDIA H200",
              commit_time: str | None = None, when: str | None = None) -> Path:
    doc = {"machine_info": {"gpu": {"name": gpu}}, "version": "5.2.3",
           "commit_info": {"id": f"{i:040x}", "time": commit_time} if commit_time else {},
           "datetime": when or f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00",
           "benchmarks": [bench(t, name) for name, t in tpots.items()]}
    path = folder / f"{i:04d}_run.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def step_series(n: int = 16, at: int = 8, step_pct: float = 15.0, seed: int = 1, cv: float = 0.035) -> list[float]:
    rng = np.random.default_rng(seed)
    level = np.where(np.arange(n) < at, 10.0, 10.0 * (1 + step_pct / 100))
    return (level * (1 + cv * rng.standard_normal(n))).tolist()


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    from pytest_moeperf.__main__ import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        code = main([*args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


# -- change points ------------------------------------------------------------------------

def test_a_step_is_found_where_it_is_with_its_size_direction_and_p():
    x = step_series()
    runs = [h.Run(f"r{i}", None, "file name", None, "G", {}) for i in range(len(x))]
    s = h.analyse_series("G", NAME, schema.METRICS_BY_KEY["tpot_ms"], runs, x)
    assert [c.index for c in s.change_points] == [8]
    cp = s.change_points[0]
    assert cp.direction == "regression" and cp.p_value < h.DEFAULT_MAX_PVALUE
    assert cp.change_pct == pytest.approx(100 * (np.mean(x[8:]) / np.mean(x[:8]) - 1))
    assert s.segments() == [(0, 8), (8, 16)]
    # the same step in a higher-is-better metric is an improvement
    up = h.analyse_series("G", NAME, schema.METRICS_BY_KEY["decode_tokens_per_s"], runs, x)
    assert up.change_points[0].direction == "improvement"


def test_short_and_constant_series():
    runs = [h.Run(f"r{i}", None, "file name", None, "G", {}) for i in range(5)]
    s = h.analyse_series("G", NAME, schema.METRICS_BY_KEY["tpot_ms"], runs, [1, 1, 1, 2, 2])
    assert s.status == h.INSUFFICIENT and not s.change_points
    assert h.find_change_points([3.0] * 10) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1.0, 100.0), min_size=6, max_size=30))
def test_segments_partition_any_series(values):
    runs = [h.Run(f"r{i}", None, "file name", None, "G", {}) for i in range(len(values))]
    s = h.analyse_series("G", NAME, schema.METRICS_BY_KEY["tpot_ms"], runs, values)
    segs = s.segments()
    assert segs[0][0] == 0 and segs[-1][1] == len(values)
    assert all(a < b for a, b in segs) and all(x[1] == y[0] for x, y in zip(segs, segs[1:]))
    for c in s.change_points:
        assert 0 < c.index < len(values) and 0 <= c.p_value <= h.DEFAULT_MAX_PVALUE
        assert (c.direction == "regression") == (c.after > c.before)


def test_detection_and_false_change_rates_at_h200_noise():
    """A few seeds of studies/history_rates.py (docs/evidence/history-h200-2026-12-02.md has the full table): at the
    H200's 4 % run-to-run CV, 24 runs, a 15 % step is found and same-code series rarely
    show a change point."""
    det20, _ = history_rates.rates(40, 24, 15.0, "gauss4")
    _, false0 = history_rates.rates(40, 24, 0.0, "gauss4")
    _, false_h200 = history_rates.rates(40, 24, 0.0, "h200")
    assert det20 >= 0.9
    assert false0 <= 0.1 and false_h200 <= 0.1


# -- the command --------------------------------------------------------------------------

def test_cli_on_a_storage_with_a_step(cli, tmp_path):
    x = step_series(n=12, at=6, step_pct=20.0)
    for i, v in enumerate(x):
        write_run(tmp_path / "store" / "Linux", i, {NAME: v}, commit_time=f"2026-10-{i + 1:02d}T00:00:00+00:00")
    code, out, err = cli("history", "store", "--metric", "tpot_ms", "--json", "h.json", "--markdown", "sum.md",
                         "-o", "hist")
    assert code == 0, err
    assert "ordered by commit time" in out and "regression" in out
    doc = json.loads((tmp_path / "h.json").read_text())
    (series,) = doc["series"]
    assert [c["index"] for c in series["change_points"]] == [6]
    assert series["change_points"][0]["commit"] == f"{6:040x}"
    assert [s["runs"] for s in series["segments"]] == [6, 6]
    assert "| NVIDIA H200 | gpt-oss-20b-c2048-n64-static | tpot_ms" in (tmp_path / "sum.md").read_text()
    png = tmp_path / "hist" / "history-nvidia-h200-tpot_ms.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert png.name in (tmp_path / "hist" / "history.md").read_text()


def test_cli_bad_input(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("history", "empty")
    assert code == 2 and err.count("\n") == 1 and "no pytest-benchmark runs" in err
    code, _, err = cli("history", "nowhere")
    assert code == 2 and "no such file or folder" in err
    write_run(tmp_path / "one", 0, {NAME: 10.0})
    code, _, err = cli("history", "one", "--metric", "nope")
    assert code == 2 and "unknown metric" in err
    code, _, err = cli("history", "one", "--since", "yesterday")
    assert code == 2 and "ISO date" in err
    code, out, _ = cli("history", "one")
    assert code == 0 and h.INSUFFICIENT in out and "ordered by their run datetime" in out


def test_mixed_gpus_sets_corrupt_files_and_no_commit_info(cli, tmp_path):
    store = tmp_path / "store"
    for i in range(6):
        write_run(store, i, {NAME: 10.0 + 0.1 * (i % 2)})
    write_run(store, 6, {NAME: 7.0}, gpu="NVIDIA H100 80GB HBM3")
    write_run(store, 7, {NAME: 10.0, "t.py::other": 3.0})
    (store / "0008_broken.json").write_text("{not json")
    (store / "0009_other.json").write_text('{"results": []}')
    code, out, _ = cli("history", "store", "--metric", "tpot_ms", "--json", "h.json")
    assert code == 0
    assert out.count("note: skipped") == 2 and "0008_broken.json: not JSON" in out
    assert "kept apart: NVIDIA H200 (7 runs), NVIDIA H100 80GB HBM3 (1 runs)" in out
    assert "benchmark sets mixed in" in out and "ordered by their run datetime" in out
    series = {(s["gpu"], s["benchmark"]): len(s["runs"]) for s in json.loads((tmp_path / "h.json").read_text())["series"]}
    assert series == {("NVIDIA H200", NAME): 7, ("NVIDIA H100 80GB HBM3", NAME): 1, ("NVIDIA H200", "t.py::other"): 1}


def test_missing_otava_is_one_line_with_the_fix(cli, tmp_path, monkeypatch):
    write_run(tmp_path / "one", 0, {NAME: 10.0})
    monkeypatch.setitem(sys.modules, "otava", None)
    monkeypatch.setitem(sys.modules, "otava.analysis", None)
    code, _, err = cli("history", "one")
    assert code == 2 and err.strip() == f"error: change-point detection needs Apache Otava: {h.INSTALL_HINT}"


# -- on the H200 runs and in the gate ------------------------------------------------------

def _h200_history(tmp_path: Path, slow: int) -> Path:
    """The 8 same-code runs, then ``slow`` of the 8 runs with a 1 ms GPU spin per decode step
    (the 10 % slowdown of docs/evidence/gate-h200.md), in the order their stored datetimes give."""
    if not H200_RUNS.is_dir():
        pytest.skip("no H200 runs in this checkout")
    for side, n in (("base", 8), ("slow", slow)):
        (tmp_path / "hist" / side).mkdir(parents=True)
        for i in range(1, n + 1):
            (tmp_path / "hist" / side / f"run{i}.json").write_bytes((H200_RUNS / side / f"run{i}.json").read_bytes())
    return tmp_path / "hist"


def test_h200_slowdown_is_a_change_point_and_the_same_code_runs_are_not(tmp_path):
    runs, _ = h.load_runs(_h200_history(tmp_path, slow=8))
    hist = h.build_history(runs, [schema.METRICS_BY_KEY["tpot_ms"]])
    (s,) = hist.series
    assert [(c.index, c.direction) for c in s.change_points] == [(8, "regression")]
    assert 7.0 < s.change_points[0].change_pct < 11.0
    same_code, _ = h.load_runs(H200_RUNS / "base")  # the 8 runs baselines/h200-static began with
    assert not any(s.change_points for s in h.build_history(same_code, h.resolve_metrics([])).series)


def test_the_refreshed_static_baselines_are_two_boards_and_last_stable_takes_the_new_one():
    # baselines/h200-static: 8 runs of 2026-11-29 (one H200, sync token clock), then 6 of 2026-12-02
    # (another H200 by UUID, CUDA-event clock): two series (issue 28 item 8: the board is part of the
    # key, where grouping by name alone showed a change point at run 9), and last-stable gates on the new 6
    runs, _ = h.load_runs(REPO / "baselines" / "h200-static")
    series = h.build_history(runs, [schema.METRICS_BY_KEY["tpot_ms"]]).series
    assert sorted((len(s.values), s.gpu_uuid[:12]) for s in series) == [(6, "GPU-646aa32c"), (8, "GPU-f66b33bb")]
    assert all(s.gpu.startswith("NVIDIA H200 GPU-") for s in series)
    assert not any(s.change_points for s in series)
    from pytest_moeperf.gate import history_gate

    choice = history_gate.last_stable([r.doc for r in runs])
    assert len(choice.docs) == 6 and all("GPU-646aa32c" in h.gpu_uuid(d) for d in choice.docs)
    assert any("the board measured last (8 run(s) of other boards left out)" in n for n in choice.notes)


def test_gate_against_the_last_stable_segment(cli, tmp_path):
    hist = _h200_history(tmp_path, slow=4)
    heads = [str(H200_RUNS / "slow" / f"run{i}.json") for i in (5, 6, 7, 8)]
    code, out, err = cli("compare", str(hist), "--baseline-segment", "last-stable", *heads, "--json", "v.json")
    assert code == 0, err
    assert "baseline segment: gpt-oss-20b-c2048-n64-static: runs 9-12 of 12, since the change point at" in out
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["verdict"] == "PASS" and len(doc["baseline_sources"]) == 4
    assert all("/slow/" in src for src in doc["baseline_sources"])
    assert doc["baseline_segment"]["mode"] == "last-stable"


def test_gate_with_too_few_stored_runs_is_insufficient_data_not_pass(cli, tmp_path):
    for i in range(3):
        write_run(tmp_path / "store", i, {NAME: 10.0 + 0.05 * i})
    head = write_run(tmp_path / "head", 9, {NAME: 10.02})
    code, out, _ = cli("compare", "store", "--baseline-segment", "last-stable", str(head), "--json", "v.json")
    assert code == 0 and "insufficient data: 3 stored runs" in out
    assert json.loads((tmp_path / "v.json").read_text())["verdict"] == "INCONCLUSIVE"
    choice = history_gate.last_stable(json.loads(json.dumps([json.loads(p.read_text()) for p in
                                                             sorted((tmp_path / "store").glob("*.json"))])))
    assert NAME in choice.insufficient


BENCH_TEST = """
import json, pathlib
def test_generate(benchmark):
    benchmark.pedantic(lambda: None, rounds=3)
    benchmark.extra_info.update(json.loads(pathlib.Path(__file__).with_name("head_extra.json").read_text()))
"""


@pytest.mark.e2e
def test_pytest_option_last_stable_and_bad_value(pytester):
    pytester.makepyfile(test_bench=BENCH_TEST)
    for i in range(3):
        write_run(pytester.path / "store", i, {"test_bench.py::test_generate": 10.0 + 0.05 * i})
    (pytester.path / "head_extra.json").write_text(json.dumps(bench(10.02)["extra_info"]))
    r = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--moeperf-gate", "store",
                                     "--moeperf-baseline-segment", "last-stable", "--moeperf-verdict-json", "v.json")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["baseline segment: test_generate: insufficient data: 3 stored runs*",
                            "moeperf gate: INCONCLUSIVE*"])
    assert json.loads((pytester.path / "v.json").read_text())["baseline_segment"]["mode"] == "last-stable"
    r = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--moeperf-gate", "store",
                                     "--moeperf-baseline-segment", "newest")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*--moeperf-baseline-segment 'newest': choose one of all, last-stable*"])


def test_workflow_keeps_the_history_and_shows_its_change_points():
    text = (REPO / ".github" / "workflows" / "moeperf-gate.yml").read_text()
    refresh = text[text.index("refresh-baseline:"):]
    assert "rm -rf baselines/h200-static" not in refresh  # the earlier runs are the history
    assert 'python -m pytest_moeperf history "baselines/$kind"' in refresh
    assert '--markdown "$GITHUB_STEP_SUMMARY"' in refresh
    assert text.count("pip install --no-deps apache-otava==0.8.0") == 2  # every job that reads change points
    assert "apache-otava" in (REPO / ".ci" / "run").read_text()


def test_plots_are_paged_with_the_largest_changes_first(tmp_path):
    """Issue 29: `history -o` on 1,000 benchmarks drew one PNG 198,063 px tall; now at most
    PANELS_PER_FIGURE panels a figure, further pages beside it, the series with the largest change first."""
    pytest.importorskip("matplotlib")
    import struct

    from pytest_moeperf.history.history_render import PANELS_PER_FIGURE, write_plots

    runs = tuple(h.Run(f"run{i}.json", None, "file name", None, "NVIDIA H200", {}) for i in range(8))
    flat = (10.0,) * 8
    series = [h.Series("NVIDIA H200", f"b.py::test_generate[case{i:02d}]", "tpot_ms", "ms/token", "lower", runs, flat,
                       h.ANALYSED) for i in range(2 * PANELS_PER_FIGURE + 5)]
    step = h.ChangePoint(4, "run4.json", None, None, 10.0, 12.0, 2.0, 20.0, "regression", 1e-4)
    series[-1] = h.Series("NVIDIA H200", "b.py::test_generate[stepped]", "tpot_ms", "ms/token", "lower", runs,
                          (10.0,) * 4 + (12.0,) * 4, h.ANALYSED, (step,))
    written = write_plots(h.History(tuple(series), (), 8), tmp_path)
    assert [p.name for p in written] == ["history-nvidia-h200-tpot_ms.png", "history-nvidia-h200-tpot_ms-p2.png",
                                         "history-nvidia-h200-tpot_ms-p3.png"]
    heights = [struct.unpack(">II", p.read_bytes()[16:24])[1] for p in written]
    assert max(heights) <= 90 * (2.2 * PANELS_PER_FIGURE + 0.7) + 1  # dpi 90: 12 panels at most
    from pytest_moeperf.history.history_render import _plot_order

    assert _plot_order(series)[0].benchmark.endswith("[stepped]")  # the change leads page 1
