"""The report's plots show the spread of the stored samples, n, and the baseline (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.report.tables import Report
from pytest_moeperf.report.rows import load_results
from pytest_moeperf.report.report_format import pack_groups, without_unit
from pytest_moeperf.report.plot_list import PLOTS
from pytest_moeperf.report.report_plots import BAND, colors, samples_of, spread
from pytest_moeperf.metrics.stats import median, median_ci95, percentile

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0001_core-matrix.json"
PAPER = ROOT / "baselines" / "h100" / "paper-h100.json"


@pytest.fixture(scope="module")
def core_report():
    return Report(load_results(CORE), load_results(PAPER))


@pytest.fixture(scope="module")
def plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@given(st.lists(st.floats(1.0, 1e4), min_size=2, max_size=40))
@settings(max_examples=40, deadline=None)
def test_median_interval_holds_the_median_within_the_samples(values):
    lo, hi = median_ci95(values)
    assert min(values) - 1e-9 <= lo <= median(values) + 1e-9
    assert median(values) - 1e-9 <= hi <= max(values) + 1e-9
    assert median_ci95(values) == (lo, hi)  # seeded: a report regenerates byte for byte


def test_median_interval_agrees_with_scipy_bootstrap():
    import numpy as np
    from scipy import stats

    values = np.random.default_rng(3).lognormal(3.0, 0.3, 12)
    ours = median_ci95(values.tolist())
    theirs = stats.bootstrap((values,), np.median, n_resamples=20000, confidence_level=0.95, method="percentile",
                             vectorized=True, random_state=np.random.default_rng(1)).confidence_interval
    width = values.max() - values.min()
    assert abs(ours[0] - theirs.low) < 0.05 * width and abs(ours[1] - theirs.high) < 0.05 * width


def test_median_interval_edge_cases():
    assert median_ci95([]) is None and median_ci95([3.0]) is None
    assert median_ci95([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_spread_is_the_band_percentiles_of_the_stored_samples(core_report):
    row = next(r for r in core_report.res.rows if r.case_id == "qwen3-32b-c128-n64")
    tpot = samples_of(row, "tpot_ms")
    assert len(tpot) == row.ei["rounds"] == 10
    s = spread(tpot)
    assert s["lo"] == percentile(tpot, BAND[0]) and s["hi"] == percentile(tpot, BAND[1]) and s["n"] == 10
    assert s["lo"] <= row.v("tpot_ms") <= s["hi"]
    # energy samples are per window, under the metric's samples key (schema.Metric.samples)
    assert len(samples_of(row, "j_per_1k_tokens")) == len(row.ei["samples"]["j_per_1k_tokens"]) >= 2
    assert spread([1.0]) is None  # one value: no band


def test_tpot_plot_has_a_band_and_intervals_per_series_and_n_in_the_legend(core_report, plt):
    from matplotlib.collections import PolyCollection  # fill_between's (a subclass since matplotlib 3.10)

    spec = next(s for s in PLOTS if s.file == "tpot_vs_context.png")
    fig = spec.draw(core_report, plt)
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3  # one p10-p90 band per model
    # the band of qwen3-32b spans its samples' p10..p90 at 128 tokens
    qwen = next(r for r in core_report.res.rows if r.case_id == "qwen3-32b-c128-n64")
    s = spread(samples_of(qwen, "tpot_ms"))
    ys = {round(float(y), 6) for b in bands for y in b.get_paths()[0].vertices[:, 1]}
    assert round(s["lo"], 6) in ys and round(s["hi"], 6) in ys
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "qwen3-32b: 10 rounds" in labels and "gpt-oss-20b: 10–20 rounds" in labels
    plt.close(fig)


def test_throughput_plot_draws_the_paper_beside_the_run_in_the_same_colour(core_report, plt):
    spec = next(s for s in PLOTS if s.file == "decode_tps_vs_context.png")
    fig = spec.draw(core_report, plt)
    e2e = fig.axes[1]
    labels = [t.get_text() for t in e2e.get_legend().get_texts()]
    assert "gpt-oss-20b, paper: 5 rounds, no samples" in labels
    dashed = [ln for ln in e2e.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 3
    paper = next(ln for ln in dashed if ln.get_label().startswith("gpt-oss-20b"))
    assert list(paper.get_ydata()) == [r.v("e2e_tokens_per_s") for r in core_report.core_rows(core_report.base)
                                       if r.model == "gpt-oss-20b"]
    assert paper.get_color() == colors(core_report)["gpt-oss-20b"]
    # the decode panel: the paper has no decode throughput, and says so
    assert "paper: no values for this metric" in [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)


@given(st.lists(st.integers(1, 6), max_size=12), st.integers(0, 3), st.integers(4, 12))
def test_pack_groups_keeps_order_and_width(widths, keys, max_columns):
    parts = pack_groups(widths, keys, max_columns)
    assert [i for p in parts for i in p] == list(range(len(widths)))
    for p in parts:
        assert len(p) == 1 or keys + sum(widths[i] for i in p) <= max_columns


def test_without_unit():
    assert without_unit("TTFT (ms)") == "TTFT" and without_unit("J/1k tokens") == "J/1k tokens"
