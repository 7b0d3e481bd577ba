"""Bad input in what the tools read: results-log records checked for shape, the gate's nothing-compared cases,
arbitrary JSON lines and documents (property tests) that never raise anything but a one-line error, and
docs/faults.md naming only tests that exist."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_moeperf.gate import config as gate_config
from pytest_moeperf.gate import decision as gate_decision
from pytest_moeperf.gate import gate_run
from pytest_moeperf.gate import verdicts as gate_verdicts
from pytest_moeperf.__main__ import main
from pytest_moeperf.settings.parsers import parse_int, parse_ints
from pytest_moeperf.results.log_document import mixed_settings_note
from pytest_moeperf.results.results_log import (LogError, ResultsLog, options_fingerprint, options_settings,
                                        parse_log_lines, read_log, resume_plan)
from pytest_moeperf.metrics import schema  # noqa: E402

from test_bad_input import parse


# --- the results log: records checked for shape (#5, #6, torn lines) -----------------------------------

CASE = {"type": "case", "fingerprint": "f1", "benchmark": {"name": "test_generate[c]", "fullname": "b::t[c]",
                                                              "param": "c", "extra_info": {"ttft_ms": 1.5}}}


def write_lines(path: Path, *lines) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


@pytest.mark.parametrize("line, expected", [
    ([1, 2, 3], "is JSON list, not a record"), ("7", "is JSON int"), ({"x": 1}, "has no 'type'"),
    ({"type": "case"}, "without a 'benchmark'"), ({"type": "case", "benchmark": {"name": "n"}}, "no 'fullname'"),
    ({"type": "case", "benchmark": {"name": 3, "fullname": "f"}}, "name is not text"),
    ({"type": "case", "benchmark": {"name": "n", "fullname": "f", "extra_info": 3}}, "extra_info"),
    ({"type": "failed", "fullname": "f"}, "without a 'case'"),
    ({"type": "session", "machine_info": []}, "machine_info"), ("garbage in the middle", "is not JSON"),
    ('{"type": "case" oops}', "is not JSON"),
])
def test_a_line_that_is_not_a_record_is_one_line_naming_it(tmp_path, line, expected):
    log = write_lines(tmp_path / "r.jsonl", CASE, line, CASE)
    with pytest.raises(LogError) as err:
        read_log(str(log))
    msg = str(err.value)
    assert "\n" not in msg and "line 2" in msg and expected in msg and "--moeperf-results" in msg


def test_a_pytest_benchmark_document_given_as_the_log_is_named(tmp_path):
    doc = {"machine_info": {}, "benchmarks": [{"name": "x"}]}
    for text in (json.dumps(doc, indent=2), json.dumps(doc)):
        (tmp_path / "b.json").write_text(text)
        with pytest.raises(LogError, match="pytest-benchmark"):
            read_log(str(tmp_path / "b.json"))


def test_a_torn_record_is_a_note_not_a_warning_and_garbage_is_not_torn(tmp_path, recwarn):
    torn = json.dumps(CASE)[:30]
    log = write_lines(tmp_path / "r.jsonl", CASE, torn, CASE)  # a later session appended after the cut
    notes: list[str] = []
    assert len(read_log(str(log), notes)) == 2
    assert len(notes) == 1 and "cut short by an interrupted write" in notes[0] and "line 2" in notes[0]
    assert not recwarn.list
    with pytest.raises(LogError):
        parse_log_lines(["hello", json.dumps(CASE)], "w", [])


def test_results_command_bad_logs_exit_2_with_one_line(tmp_path, capsys):
    for name, lines in {"list": [[1, 2, 3]], "no-bench": [{"type": "case"}], "empty": [],
                        "doc": [json.dumps({"benchmarks": []})]}.items():
        log = write_lines(tmp_path / f"{name}.jsonl", *lines)
        assert main(["results", str(log)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
    assert main(["results", str(tmp_path / "list.jsonl"), "--json", str(tmp_path / "list.jsonl")]) == 2


def test_results_warns_when_records_mix_settings(tmp_path, capsys):
    other = {**CASE, "fingerprint": "f2", "benchmark": {**CASE["benchmark"], "param": "d", "fullname": "b::t[d]"}}
    log = write_lines(tmp_path / "r.jsonl", {"type": "session", "fingerprint": "f1", "settings": {"rounds": 2}},
                      CASE, {"type": "session", "fingerprint": "f2", "settings": {"rounds": 5}}, other)
    assert main(["results", str(log)]) == 0
    out = capsys.readouterr()
    assert "2 finished, 0 failed" in out.out
    assert "2 different settings (they differ in rounds)" in out.err
    assert mixed_settings_note([CASE, CASE]) is None


def test_resume_plan_says_why_logged_cases_are_measured_again(tmp_path):
    options = parse(moeperf_results=str(tmp_path / "r.jsonl"), moeperf_rounds="3")
    before = parse(moeperf_results=str(tmp_path / "r.jsonl"), moeperf_rounds="2")
    log = ResultsLog(options.results_path, options_fingerprint(before), options_settings(before))
    log.session_started({})
    log.case_finished({"name": "test_generate[c]", "fullname": "b::t[c]", "param": "c", "extra_info": {}})
    done, notes = resume_plan(options)
    assert done == set() and len(notes) == 1
    assert "1 logged case(s) were finished under other settings (rounds 2 -> 3)" in notes[0] and ": c" in notes[0]
    assert resume_plan(before) == ({"c"}, [])


# --- the gate: nothing compared is not a PASS ------------------------------------------------------------

def _doc(*names, gpu="NVIDIA H200", device=None, extra=None):
    benches = [{"name": n, "fullname": f"b::{n}", "extra_info": dict(extra if extra is not None else
                                                                        {"tpot_ms": 10.0, "ttft_ms": 5.0})}
               for n in names]
    mi = {"gpu": {"name": gpu} if gpu else None}
    if device:
        mi["moeperf_device"] = device
    return {"machine_info": mi, "benchmarks": benches}


def test_nothing_compared_is_no_overlap_with_its_own_exit_code():
    cfg = gate_config.load_gate_config(None)
    for head in (_doc("other_suite"), _doc(), _doc("t[a]", extra={})):
        result = gate_run.compare_documents([_doc("t[a]")], head, cfg)
        assert result.verdict == gate_verdicts.NO_OVERLAP and result.exit_code() == gate_verdicts.EXIT_NO_OVERLAP == 3
        assert result.to_json()["verdict"] == "NO-OVERLAP" and result.to_json()["compared"] == 0
    ok = gate_run.compare_documents([_doc("t[a]")], _doc("t[a]", "t[new]"), cfg)
    assert ok.verdict == gate_verdicts.PASS and ok.exit_code() == 0 and ok.compared == 1
    fresh = gate_decision.build_result([], [], cfg)  # pytest, no baseline stored yet: fault 6 still PASSes
    assert fresh.verdict == gate_verdicts.PASS and fresh.exit_code() == 0


def test_a_half_finished_benchmark_is_not_counted_as_pass():
    cfg = gate_config.load_gate_config(None)
    result = gate_run.compare_documents([_doc("t[a]", "t[b]")], _doc("t[a]", "t[b]", extra={}), cfg)
    assert all(b.status == "not-compared" and b.verdict == gate_verdicts.SKIPPED for b in result.benchmarks)
    from pytest_moeperf.gate.gate_render import render_markdown, render_text

    text = render_text(result)
    assert text.startswith("moeperf gate: NO-OVERLAP (2 not compared)") and "nothing was compared" in text
    assert "NO-OVERLAP" in render_markdown(result)


def test_a_gpu_baseline_against_a_cpu_run_is_a_device_mismatch():
    cfg = gate_config.load_gate_config(None)
    cpu_runs = (_doc("t[a]", gpu=None, device="cpu (x86_64, 2 cores)"),
                _doc("t[a]", gpu=None, extra={"tpot_ms": 1.0, "device_name": "cpu (x86_64, 2 cores)"}))
    for head in cpu_runs:
        with pytest.raises(gate_config.GpuMismatchError, match="NVIDIA H200.*this run is on the CPU.*baselines/cpu"):
            gate_run.compare_documents([_doc("t[a]")], head, cfg)
    assert gate_run.compare_documents([_doc("t[a]")], cpu_runs[0], gate_config.load_gate_config(None, ignore_gpu=True))


def test_a_results_log_given_to_compare_or_report_points_to_results_json(tmp_path, capsys):
    log = write_lines(tmp_path / "r.jsonl", {"type": "session", "machine_info": {}}, CASE, CASE)
    for argv in (["compare", str(log), str(log)], ["report", str(log), "-o", str(tmp_path / "rep")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "results log" in err[0] and f"results {log} --json" in err[0], err


def test_report_refuses_documents_without_numeric_metrics(tmp_path, capsys):
    for extra in ({}, {"ttft_ms": "fast", "tpot_ms": [1]}):
        path = tmp_path / "doc.json"
        path.write_text(json.dumps({"benchmarks": [{"name": "test_generate[tiny-dense-c64-n4]", "extra_info": extra}]}))
        assert main(["report", str(path), "-o", str(tmp_path / "rep")]) == 2
        assert "no benchmark has a numeric moeperf metric" in capsys.readouterr().err


# --- property: arbitrary JSON lines never raise anything but a one-line error --------------------------

KEYS = st.sampled_from(["type", "benchmark", "name", "fullname", "param", "extra_info", "case", "error",
                        "machine_info", "settings", "fingerprint", "benchmarks", "stats", "ttft_ms", "tpot_ms",
                        "samples", "gpu", "rounds", "e2e_ms", "moeperf_device", "device_name"])
SCALARS = (st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True)
           | st.sampled_from(["case", "failed", "session", "c", "test_generate[tiny-dense-c64-n4]", "cpu", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                      max_leaves=20)
from pytest_moeperf.metrics import schema  # noqa: E402

IDS = st.sampled_from(["tiny-dense-c64-n4", "tiny-moe-c128-n16-fp32", "gpt-oss-20b-c2048-n64-static", "odd"])
NUMBER = st.floats(0.001, 1e5) | st.integers(0, 10**9)
EXTRA = st.fixed_dictionaries({}, optional={
    **{m.key: NUMBER | VALUES for m in schema.METRICS},
    "samples": st.dictionaries(st.sampled_from(sorted({m.samples for m in schema.METRICS if m.samples})),
                               st.lists(NUMBER, max_size=6) | VALUES, max_size=4) | VALUES,
    **{k: VALUES for k in ("device_name", "rounds", "throttled_rounds", "source", "model", "dtype", "batch_size",
                           "context_tokens", "new_tokens", "gpu_uuid", "failed", "error")}})


def _case(case_id, extra, stats, fingerprint, named=True):
    name = f"test_generate[{case_id}]"
    bench = {"name": name, "fullname": f"benchmarks/test_deployment.py::{name}", "param": case_id,
             "extra_info": extra, "stats": stats}
    if not named:
        del bench["name"]
    return {"type": "case", "fingerprint": fingerprint, "benchmark": bench}


FINGERPRINTS = st.sampled_from(["f1", "f2"]) | st.none()
RECORDS = st.one_of(
    st.builds(_case, IDS, EXTRA, st.none() | VALUES, FINGERPRINTS, st.booleans()),
    st.fixed_dictionaries({"type": st.just("failed"), "case": IDS, "fullname": IDS.map(lambda i: f"b::t[{i}]"),
                           "error": st.text(max_size=10) | st.none(), "fingerprint": FINGERPRINTS}),
    st.fixed_dictionaries({"type": st.just("session"), "fingerprint": FINGERPRINTS},
                          optional={"machine_info": st.dictionaries(KEYS, VALUES, max_size=3),
                                    "settings": st.dictionaries(KEYS, VALUES, max_size=3)}))
ANY_LINE = st.one_of(VALUES.map(json.dumps), st.text(max_size=12), RECORDS.map(lambda r: json.dumps(r)[:25]))


def _insert(records, odd, at):
    lines = [json.dumps(r) for r in records]
    if odd is not None:
        lines.insert(min(at, len(lines)), odd)
    return lines


# mostly well-formed records with arbitrary values, and at most one arbitrary line among them
LINES = st.builds(_insert, st.lists(RECORDS, max_size=5), st.none() | ANY_LINE, st.integers(0, 5))


def _one_line_error(code: int, err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err


@pytest.fixture
def no_plots(monkeypatch):
    """The report's markdown without its PNGs (matplotlib costs ~1 s a report): the plots get
    arbitrary data in test_arbitrary_results_logs_make_a_report_with_plots_or_one_line."""
    from pytest_moeperf.report.tables import Report

    monkeypatch.setattr(Report, "write_plots", lambda self, out: [])


@given(lines=LINES)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_json_lines_give_a_result_or_one_line(lines, capsys, no_plots):
    _results_then_compare_and_report(lines, capsys)


@given(lines=LINES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_results_logs_make_a_report_with_plots_or_one_line(lines, capsys):
    _results_then_compare_and_report(lines, capsys)


def _results_then_compare_and_report(lines, capsys):
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "r.jsonl"
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        capsys.readouterr()
        code = main(["results", str(log), "--json", str(Path(d) / "run.json")])
        out = capsys.readouterr()
        if code == 2:
            _one_line_error(code, out.err)
            return
        assert code == 0, out
        records = read_log(str(log), [])
        finished = sum(1 for r in records if r["type"] == "case")
        failed = sum(1 for r in records if r["type"] == "failed")
        assert f"{finished} finished, {failed} failed" in out.out
        run = Path(d) / "run.json"
        for argv in (["compare", str(run), str(run)], ["compare", str(run), str(log)],
                     ["report", str(run), "-o", str(Path(d) / "rep")]):
            code = main(argv)
            out = capsys.readouterr()
            assert code in (0, 1, 2, 3), (argv, code, out)
            if code == 2:
                _one_line_error(code, out.err)


_INFINITE = {"fullname": "benchmarks/test_deployment.py::test_generate[tiny-dense-c64-n4]",
             "param": "tiny-dense-c64-n4", "stats": None}


@given(doc=VALUES | st.builds(lambda recs: {"benchmarks": [r["benchmark"] for r in recs if r["type"] == "case"]},
                               st.lists(RECORDS, max_size=4)))
@example(doc={"benchmarks": [{**_INFINITE, "extra_info": {"ttft_ms": 1.0, "rounds": float("inf")}}]})
@example(doc={"benchmarks": [{**_INFINITE, "extra_info": {"ttft_ms": 1.0, "throttled_rounds": float("inf")}}]})
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_json_documents_give_a_result_or_one_line(doc, capsys, no_plots):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "doc.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        good = Path(d) / "good.json"
        good.write_text(json.dumps(_doc("n1")), encoding="utf-8")
        capsys.readouterr()
        for argv in (["compare", str(good), str(path)], ["compare", str(path), str(good)],
                     ["report", str(path), "--against", str(good), "-o", str(Path(d) / "rep")]):
            code = main(argv)
            out = capsys.readouterr()
            assert code in (0, 1, 2, 3), (argv, code, out)
            if code == 2:
                _one_line_error(code, out.err)


def test_every_prefix_of_a_record_reads_as_torn_and_nothing_else_does():
    rec = json.dumps({**CASE, "benchmark": {**CASE["benchmark"], "extra_info": {
        "ttft_ms": 1.5e-7, "ok": True, "none": None, "no": False, "n": -12.25, "s": "a\"b\\\u00e9", "l": [1, [2, {}]]}}})
    for i in range(1, len(rec)):
        notes: list[str] = []
        assert parse_log_lines([rec[:i]], "w", notes, strict=True) == [] and notes, rec[:i]
    for garbage in ('{"type": "case" oops}', "{garbage}", '{"a": 1}}', "hello"):
        with pytest.raises(LogError):
            parse_log_lines([garbage], "w", [], strict=True)


def test_faults_doc_names_only_tests_that_exist():
    """docs/faults.md promises a test for each fault: each test it names (and each parameter id)
    must exist, so a renamed or deleted test cannot leave a promise untested."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "faults.md").read_text(encoding="utf-8")
    current, named, problems = None, 0, []
    for m in re.finditer(r"`(?:tests/)?(test_\w+\.py)?::(test_\w+)(?:\[([^\]]*)\])?`", text):
        current = m.group(1) or current
        source = (root / "tests" / current).read_text(encoding="utf-8")
        named += 1
        if f"def {m.group(2)}(" not in source:
            problems.append(f"{current}::{m.group(2)}")
        for pid in filter(None, (p.strip() for p in (m.group(3) or "").split(","))):
            if f'"{pid}"' not in source:
                problems.append(f"{current}::{m.group(2)}[{pid}]")
    assert named > 40 and not problems, problems


def test_resume_plan_refuses_a_log_line_that_is_not_a_record(tmp_path):
    """--moeperf-resume reads the log through resume_plan; the plugin turns its ValueError into a usage error."""
    options = parse(moeperf_results=str(write_lines(tmp_path / "r.jsonl", CASE, [1, 2, 3])))
    with pytest.raises(ValueError, match="line 2 is JSON list, not a record"):
        resume_plan(options)


@pytest.mark.parametrize("raw, example", [("1e3", "--moeperf-rounds=1000"), ("abc", "--moeperf-rounds=10"),
                                          ("2.5", "--moeperf-rounds=10")])
def test_a_one_value_number_error_suggests_one_value(raw, example):
    """Issue 27 item 10: `--moeperf-rounds 1e3` suggested a list (128,512) for a one-value option."""
    with pytest.raises(ValueError, match=f"is not a whole number; e.g. {example}$"):
        parse_int("--moeperf-rounds", raw)
    with pytest.raises(ValueError, match=r"e.g. --moeperf-contexts=128,512$"):
        parse_ints("--moeperf-contexts", f"64,{raw}x")
