"""The report over long contexts (issue 21): several runs, failed cases as "OOM", memory vs context."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_moeperf.__main__ import main
from pytest_moeperf.metrics.schema import METRICS_BY_KEY
from pytest_moeperf.model.cases import Case, DECODING_PRESETS
from pytest_moeperf.report.context_tables import kv_difference_bytes
from pytest_moeperf.report import context_tables
from pytest_moeperf.report.failed_cases import failed_rows, failure_label, parse_case_id
from pytest_moeperf.report.plot_list import PLOTS
from pytest_moeperf.report.report_plots import failed_label, failed_points
from pytest_moeperf.report.rows import results_of
from pytest_moeperf.report.runs import load_runs
from pytest_moeperf.report.tables import Report

from test_report import _bench, _column, _doc, _table_lines

OOM = ("CUDA out of memory. Tried to allocate 32.00 GiB. GPU 0 has a total capacity of 139.80 GiB of which "
       "2.06 GiB is free.")


def _failed(case: Case, error: str = OOM) -> dict:
    return {"fullname": case.fullname, "case": case.case_id, "error": error}


def short_run() -> dict:
    return _doc([_bench(Case(m, c, 16), cpu=False) for m in ("tiny-moe", "tiny-dense") for c in (128, 512)],
                cpu=False)


def long_run() -> dict:
    doc = _doc([_bench(Case("tiny-dense", c, 16), cpu=False, kv_cache_measured_bytes=4096 * c + 8)
                for c in (8192, 32768)] + [_bench(Case("tiny-moe", 8192, 16), cpu=False)], cpu=False)
    doc["moeperf_failed"] = [_failed(Case("tiny-moe", 32768, 16)),
                             {"fullname": "benchmarks/test_serving.py::test_serving[tiny-moe-c2048-n64-cc4]",
                              "case": "tiny-moe-c2048-n64-cc4", "error": OOM}]
    doc["datetime"] = "2025-12-02T01:00:00+00:00"
    return doc


def _write(tmp_path: Path, name: str, doc: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# --- failed cases ---------------------------------------------------------------------------------

_model = st.from_regex(r"[a-z][a-z0-9.]{0,6}(-[a-z0-9.]{1,6}){0,3}", fullmatch=True)


@given(_model, st.integers(1, 1 << 20), st.integers(2, 4096))
@settings(max_examples=40, deadline=None)
def test_a_core_case_id_reads_back_to_its_model_context_and_new_tokens(model, context, new):
    assume(parse_case_id(model) is None)  # a model name that is itself "x-c1-n2" would be ambiguous
    assert parse_case_id(Case(model, context, new).case_id) == (model, context, new, ())


@given(_model, st.integers(1, 65536), st.sampled_from(["fp32", "fp16"]), st.sampled_from(["eager", "static"]),
       st.integers(1, 8), st.sampled_from(sorted(DECODING_PRESETS)), st.sampled_from([None, "batched_mm"]))
@settings(max_examples=40, deadline=None)
def test_a_variant_case_id_is_never_read_back_as_a_core_case(model, context, dtype, backend, batch, decoding, experts):
    assume(parse_case_id(model) is None)
    case = Case(model, context, 64, dtype=dtype, backend=backend, batch_size=batch, decoding=decoding,
                experts=experts)
    m, c, n, rest = parse_case_id(case.case_id)
    assert (m, c, n) == (model, context, 64)
    assert rest  # a suffix: the row is not a core row


def test_failure_label_names_an_oom_and_nothing_else():
    assert failure_label(OOM) == "OOM"
    assert failure_label("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB") == "OOM"
    assert failure_label("RuntimeError: inductor: compile failed") == "failed"
    assert failure_label(None) == failure_label(1) == "failed"
    assert failure_label(OOM, not_run=True) == "not run"


def test_failed_entries_become_failed_rows_at_their_model_and_context_serving_points_excluded():
    rows = failed_rows(long_run())
    assert [(r.case_id, r.model, r.context, r.new_tokens, r.core, r.failed) for r in rows] == [
        ("tiny-moe-c32768-n16", "tiny-moe", 32768, 16, True, True)]
    odd = failed_rows({"moeperf_failed": [{"fullname": "t::test_x[weird]", "case": "weird", "error": "boom"},
                                          "not an entry"]})
    assert [(r.case_id, r.context, r.core, r.error) for r in odd] == [("weird", None, False, "boom")]


def test_failed_marks_in_plots_group_contexts_by_reason():
    res = results_of("long.json", long_run())
    assert failed_points(res.rows) == {"tiny-moe": [(32768, "OOM")]}
    assert failed_label([(16384, "OOM"), (32768, "OOM"), (512, "failed")]) == "OOM at 16384, 32768; failed at 512"


# --- memory vs context ----------------------------------------------------------------------------

def test_kv_table_compares_measured_with_analytic_and_shows_failed_cells_as_oom():
    report = Report(results_of("long.json", long_run()))
    table = _table_lines("\n".join(context_tables.memory_table(report)), "### Table 5b")
    measured = METRICS_BY_KEY["kv_cache_measured_bytes"]
    header = f"{measured.title} (MB)"  # the registry's title, bytes shown as decimal MB
    assert _column(table, "Model")[3].startswith("tiny-moe ✗")  # the footnote mark with the error
    assert _column(table, "Context (tokens)") == ["8192", "32768", "8192", "32768"]
    assert _column(table, header) == ["33.55", "134.22", "33.55", "OOM"]  # the registry's format (.2f)
    assert _column(table, f"KV measured − analytic ({measured.unit})") == ["8", "8", "0", "OOM"]  # REPORT_METRICS
    by_id = {r.case_id: r for r in report.res.rows}
    assert kv_difference_bytes(by_id["tiny-dense-c32768-n16"]) == 8
    assert kv_difference_bytes(by_id["tiny-moe-c32768-n16"]) is None  # failed: no numbers


# --- several runs -------------------------------------------------------------------------------

def test_several_runs_merge_by_case_id_the_later_file_winning(tmp_path):
    first = _write(tmp_path, "a.json", short_run())
    second = long_run()
    second["benchmarks"].append(_bench(Case("tiny-moe", 128, 16), cpu=False, ttft_ms=999.0))
    merged = load_runs([str(first), str(_write(tmp_path, "b.json", second))])
    assert merged.by_id["tiny-moe-c128-n16"].v("ttft_ms") == 999.0
    assert len(merged.rows) == 4 + 4 - 1 + 1  # 4 short, 3 long measured + 1 replacing, 1 failed
    assert [len(r.rows) for r in merged.sources] == [4, 5]


def test_a_bad_second_file_is_one_line_naming_it(tmp_path, capsys):
    good = _write(tmp_path, "a.json", short_run())
    bad = tmp_path / "b.json"
    bad.write_text("{", encoding="utf-8")
    assert main(["report", str(good), str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "b.json: not JSON" in err


# --- end to end: the command line on a core run and a long-context run with an OOM -------------------------

def test_report_cli_shows_long_contexts_and_the_oom_where_its_numbers_would_be(tmp_path, capsys):
    out = tmp_path / "out"
    paths = [str(_write(tmp_path, "short.json", short_run())), str(_write(tmp_path, "long.json", long_run()))]
    assert main(["report", *paths, "-o", str(out)]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    for title in ("### Table 2", "### Table 3"):
        table = _table_lines(md, title)
        contexts = _column(table, "Context (tokens)")
        assert contexts == ["128", "128", "512", "512", "8192", "8192", "32768", "32768"], title
        i = next(i for i, (c, m) in enumerate(zip(contexts, _column(table, "Model")))
                 if c == "32768" and m.startswith("tiny-moe"))
        cells = [line.strip("|").split(" | ") for line in table[2:]][i]
        assert [c.strip() for c in cells[2:]] == ["OOM"] * (len(cells) - 2), title  # never a number
    table4 = "\n".join(_table_lines(md, "### Table 4"))
    assert "| tiny-dense | 128 → 32768 |" in table4 and "| tiny-moe | 128 → 8192 |" in table4
    assert "tiny-moe at 32768: OOM" in md
    assert "### Runs merged into this report" in md and "tiny-moe-c2048-n64-cc4" not in md  # serving: elsewhere
    assert "CUDA out of memory. Tried to allocate 32.00 GiB" in md  # the footnote keeps the error
    for spec in PLOTS:
        assert (out / spec.file).read_bytes().startswith(b"\x89PNG"), spec.file
    assert "memory_vs_context.png" in md and (out / "report.html").is_file()


def test_line_plots_mark_the_failed_context_and_go_log_over_a_wide_range(tmp_path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    report = Report(load_runs([str(_write(tmp_path, "s.json", short_run())), str(_write(tmp_path, "l.json", long_run()))]))
    fig = next(spec for spec in PLOTS if spec.file == "ttft_vs_context.png").draw(report, plt)
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.texts] == ["OOM"]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # 128..32768; TTFT spans > 30x
        assert [t.get_text() for t in ax.get_xticklabels()] == ["128", "512", "8192", "32768"]
        assert any("OOM at 32768" in t.get_text() for t in ax.get_legend().get_texts())
    finally:
        plt.close(fig)


def test_a_benchmark_marked_failed_shows_its_reason_never_its_partial_numbers():
    doc = short_run()  # a failed benchmark (the paper's FP16 rows) may carry numbers: they are not results
    doc["benchmarks"].append(_bench(Case("tiny-moe", 1024, 16), cpu=False, failed=True, error="RuntimeError: boom"))
    table = _table_lines(Report(results_of("x.json", doc)).markdown(), "### Table 2")
    row = next(line for line in table if line.startswith("| 1024 | tiny-moe"))
    assert [c.strip() for c in row.strip("|").split(" | ")[2:]] == ["failed"] * 3


def test_rounds_that_scatter_past_the_gates_reach_are_flagged():
    from pytest_moeperf.report.scatter import too_scattered

    quiet = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.1, 99.9, 100.0]
    noisy = [100.0, 140.0, 80.0, 130.0, 90.0, 150.0, 70.0, 120.0, 85.0, 135.0]
    assert too_scattered(quiet) is None
    cv, mde, threshold = too_scattered(noisy)
    assert mde > threshold == 7.0 and cv > 20
    assert too_scattered(noisy[:2]) is None  # two rounds: the spread itself is unknown
