"""Bad and odd inputs (issue 15): pure unit tests of the rules, and a hypothesis property test of
the results-log reader and the command line's loaders. The pytest paths are in test_bad_input_e2e.py."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_moeperf.gate import config as gate_config
from pytest_moeperf.gate import decision as gate_decision
from pytest_moeperf.gate import verdicts as gate_verdicts
from pytest_moeperf.results import outputs
from pytest_moeperf.__main__ import main
from pytest_moeperf.model.cases import Case
from pytest_moeperf.plugin.options import (check_case, check_unique_cases, parse_int, parse_ints, parse_list,
                                    parse_options)
from pytest_moeperf.results.outputs import drop_unfinished
from pytest_moeperf.results.results_log import (LogError, ResultsLog, mixed_settings_note, options_fingerprint,
                                        options_settings, parse_log_lines, read_log, resume_plan)


def parse(**given):
    return parse_options(lambda name: given.get(name), cuda_available=False)


def refused(**given) -> str:
    with pytest.raises(ValueError) as err:
        parse(**given)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# --- one rule for every option value (issue 15: #1, #2, empty values) -------------------------------

LIST_OPTIONS = {  # dest -> (option, a valid value)
    "moeperf_models": ("--moeperf-models", "tiny-dense"), "moeperf_contexts": ("--moeperf-contexts", "64"),
    "moeperf_new_tokens": ("--moeperf-new-tokens", "4"), "moeperf_dtype": ("--moeperf-dtype", "bf16"),
    "moeperf_backend": ("--moeperf-backend", "eager"), "moeperf_batch": ("--moeperf-batch", "1"),
    "moeperf_decoding": ("--moeperf-decoding", "greedy"), "moeperf_experts": ("--moeperf-experts", "eager"),
    "moeperf_context_mode": ("--moeperf-context-mode", "exact"),
}
ONE_VALUE_OPTIONS = {
    "moeperf_rounds": ("--moeperf-rounds", "2"), "moeperf_warmup_rounds": ("--moeperf-warmup-rounds", "1"),
    "moeperf_energy_window_s": ("--moeperf-energy-window-s", "5"),
    "moeperf_energy_windows": ("--moeperf-energy-windows", "5"), "moeperf_seed": ("--moeperf-seed", "1"),
    "moeperf_token_clock": ("--moeperf-token-clock", "auto"), "moeperf_gpu": ("--gpu", "cpu"),
    "moeperf_warmup_s": ("--moeperf-warmup-s", "30"), "moeperf_gc": ("--moeperf-gc", "freeze"),
}
PATH_OPTIONS = {"moeperf_results": "--moeperf-results", "moeperf_compile_cache": "--moeperf-compile-cache"}


@pytest.mark.parametrize("dest", [*LIST_OPTIONS, *ONE_VALUE_OPTIONS, *PATH_OPTIONS])
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_value_is_an_error_for_every_option(dest, empty):
    option = {**LIST_OPTIONS, **ONE_VALUE_OPTIONS}.get(dest, (PATH_OPTIONS.get(dest),))[0]
    msg = refused(**{dest: empty})
    assert msg.startswith(f"{option}: empty") and "leave" in msg


@pytest.mark.parametrize("dest", LIST_OPTIONS)
def test_a_value_given_twice_is_an_error_for_every_list_option(dest):
    option, value = LIST_OPTIONS[dest]
    msg = refused(**{dest: f"{value},{value}"})
    assert msg.startswith(option) and "given twice" in msg and "once" in msg


@pytest.mark.parametrize("dest", LIST_OPTIONS)
def test_an_empty_item_is_an_error_for_every_list_option(dest):
    option, value = LIST_OPTIONS[dest]
    assert refused(**{dest: f"{value},,"}).startswith(f"{option}: empty item")


@pytest.mark.parametrize("dest", ONE_VALUE_OPTIONS)
def test_several_values_where_one_is_expected_is_an_error(dest):
    option, value = ONE_VALUE_OPTIONS[dest]
    msg = refused(**{dest: f"{value},{value}x"})
    assert msg.startswith(option) and "takes one value" in msg


def test_warm_up_time_and_gc_policy():
    assert parse().warmup_s == 0.0 and parse().gc == "on"
    assert parse(moeperf_warmup_s="30", moeperf_gc="between-rounds").warmup_s == 30.0
    assert "choose one of on, freeze, between-rounds" in refused(moeperf_gc="off")
    assert "> 0" in refused(moeperf_warmup_s="-1")
    # added later: at their defaults they stay out of the results log's print, so earlier logs resume
    assert not {"warmup_s", "gc"} & set(options_settings(parse()))
    assert options_settings(parse(moeperf_warmup_s="30", moeperf_gc="freeze"))["gc"] == "freeze"


def test_rounds_2_5_is_refused_not_cut_to_2():
    assert "takes one value" in refused(moeperf_rounds="2,5")
    assert parse(moeperf_rounds="2").rounds == 2 and parse().rounds == 10


@given(st.text(max_size=20))
@settings(max_examples=200)
def test_parse_ints_gives_distinct_whole_numbers_or_one_line(text):
    try:
        values = parse_ints("--x", text, minimum=2)
    except ValueError as exc:
        assert str(exc).startswith("--x: ") and "\n" not in str(exc)
        return
    assert values and len(set(values)) == len(values) and all(v >= 2 for v in values)
    assert parse_list("--x", text) == [t.strip() for t in text.split(",")]


def test_parse_helpers_return_none_when_not_given():
    assert parse_list("--x", None) is None and parse_ints("--x", None) is None and parse_int("--x", None) is None


# --- --moeperf-weights: its own label, precise diagnoses, one per model ---------------------------------

def test_weights_diagnoses(tmp_path):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text("{}")
    good = tmp_path / "good"
    good.mkdir()
    (good / "config.json").write_text("{}")
    (good / "model.safetensors").write_bytes(b"x")
    cases = {file: "is a file", no_config: "no config.json", no_weights: "holds no weights",
             tmp_path / "missing": "no such folder"}
    for path, expected in cases.items():
        msg = refused(moeperf_weights=[f"tiny-dense={path}"])
        assert msg.startswith(f"--moeperf-weights: tiny-dense={path}: ") and expected in msg, msg
        assert "accelerate" not in msg and "--moeperf-contexts" not in msg
    assert parse(moeperf_weights=[f"tiny-dense={good}"]).checkpoint_for("tiny-dense") == str(good)
    assert parse(moeperf_weights=["tiny-dense=Qwen/Qwen3-0.6B"]).weights  # a hub id: left to the loader


def test_a_second_weights_for_one_model_is_an_error():
    msg = refused(moeperf_weights=["tiny-dense=org/a", "tiny-dense=org/b"])
    assert "tiny-dense is given twice" in msg and "'org/a'" in msg and "'org/b'" in msg


# --- cases: the same checks wherever a case comes from (issue 15: #2, #9) -------------------------------

@pytest.mark.parametrize("case, expected", [
    (Case("tiny-dense", 5000, 4), "4096"), (Case("tiny-dense", 64, 1), "new_tokens"),
    (Case("tiny-dense", 0, 4), "context_tokens"), (Case("tiny-dense", 64, 4, dtype="fp8"), "dtype"),
    (Case("tiny-dense", 64, 4, backend="vllm"), "backend"), (Case("tiny-dense", 64, 4, batch_size=0), "batch"),
    (Case("tiny-moe", 64, 4, experts="magic"), "experts"), (Case("nope", 64, 4), "unknown model"),
])
def test_check_case_refuses_what_the_plugin_refuses(case, expected):
    with pytest.raises(ValueError, match=expected):
        check_case(case)


def test_measure_case_checks_before_anything_loads():
    from pytest_moeperf.measure.session import MoeperfSession

    session = MoeperfSession(parse())
    ran = []
    with pytest.raises(ValueError, match="4096"):
        session.measure_case(Case("tiny-dense", 5000, 4), lambda *a: ran.append(a))
    assert ran == [] and session._loaded is None


def test_duplicate_cases_are_refused():
    check_unique_cases([Case("tiny-dense", 64, 4), Case("tiny-dense", 80, 4)])
    with pytest.raises(ValueError, match="tiny-dense-c64-n4 appears twice"):
        check_unique_cases([Case("tiny-dense", 64, 4), Case("tiny-dense", 64, 4)])


# --- output paths, checked up front (issue 15: #3, #4, #8) ----------------------------------------------

def test_output_path_problems_are_one_line(tmp_path, monkeypatch):
    a_file = tmp_path / "README.md"
    a_file.write_text("x")
    for path, expected in ((a_file / "r.jsonl", "is a file, not a folder"), (tmp_path, "is a folder"),
                           ("", "empty path")):
        with pytest.raises(ValueError, match=expected):
            outputs.check_outputs([("--moeperf-results", str(path))])
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(locked)) else real_access(p, mode))
    with pytest.raises(ValueError, match="not writable"):
        outputs.check_outputs([("--moeperf-results", str(locked / "sub" / "r.jsonl"))])
    (locked / "r.jsonl").write_text("")
    with pytest.raises(ValueError, match="is not writable"):
        outputs.check_outputs([("--moeperf-results", str(locked / "r.jsonl"))])


def test_two_outputs_may_not_share_a_path(tmp_path):
    with pytest.raises(ValueError, match="--moeperf-results and --benchmark-json both write"):
        outputs.check_outputs([("--moeperf-results", str(tmp_path / "x.json")), ("--moeperf-verdict-json", None),
                               ("--benchmark-json", str(tmp_path / "sub" / ".." / "x.json"))])
    os.symlink(tmp_path / "v.json", tmp_path / "link.json")
    with pytest.raises(ValueError, match="--moeperf-verdict-json and --benchmark-json both write"):
        outputs.check_outputs([("--moeperf-verdict-json", str(tmp_path / "v.json")),
                               ("--benchmark-json", str(tmp_path / "link.json"))])
    outputs.check_outputs([("--moeperf-results", str(tmp_path / "a.jsonl")), ("--benchmark-json", str(tmp_path / "b"))])


def test_benchmark_save_storage_is_checked(tmp_path):
    storage = tmp_path / "baselines" / "h200"
    with pytest.raises(ValueError, match="inside --benchmark-storage"):
        outputs.check_outputs([("--moeperf-verdict-json", str(storage / "verdict.json"))], str(storage),
                              not_in_storage=("--moeperf-verdict-json",))
    with pytest.raises(ValueError, match="--moeperf-results: .* is inside --benchmark-storage"):
        outputs.check_outputs([("--moeperf-results", str(storage / "r.json"))], str(storage),
                              not_in_storage=("--moeperf-results",), saving=False)  # the gate reads it all the same
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        outputs.check_outputs([], str(tmp_path / "file" / "h200"))
    outputs.check_outputs([], str(tmp_path / "file" / "h200"), saving=False)  # not written: not checked
    outputs.check_outputs([("--benchmark-json", str(storage / "by-hand.json"))], str(storage),
                          not_in_storage=("--moeperf-verdict-json",))


def test_results_log_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(ValueError, match="cannot create its folder"):
        ResultsLog(str(tmp_path / "README.md" / "r.jsonl"))


# --- Ctrl-C: the case in progress is dropped from pytest-benchmark's JSON (#7) -------------------------

def test_drop_unfinished_keeps_finished_and_foreign_benchmarks():
    benches = [{"fullname": "t[a]"}, {"fullname": "t[b]"}, {"fullname": "other"}]
    assert drop_unfinished(benches, {"t[a]", "t[b]"}, {"t[a]"}) == [{"fullname": "t[a]"}, {"fullname": "other"}]


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
        result = gate_decision.compare_documents([_doc("t[a]")], head, cfg)
        assert result.verdict == gate_verdicts.NO_OVERLAP and result.exit_code() == gate_verdicts.EXIT_NO_OVERLAP == 3
        assert result.to_json()["verdict"] == "NO-OVERLAP" and result.to_json()["compared"] == 0
    ok = gate_decision.compare_documents([_doc("t[a]")], _doc("t[a]", "t[new]"), cfg)
    assert ok.verdict == gate_verdicts.PASS and ok.exit_code() == 0 and ok.compared == 1
    fresh = gate_decision.build_result([], [], cfg)  # pytest, no baseline stored yet: fault 6 still PASSes
    assert fresh.verdict == gate_verdicts.PASS and fresh.exit_code() == 0


def test_a_half_finished_benchmark_is_not_counted_as_pass():
    cfg = gate_config.load_gate_config(None)
    result = gate_decision.compare_documents([_doc("t[a]", "t[b]")], _doc("t[a]", "t[b]", extra={}), cfg)
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
            gate_decision.compare_documents([_doc("t[a]")], head, cfg)
    assert gate_decision.compare_documents([_doc("t[a]")], cpu_runs[0], gate_config.load_gate_config(None, ignore_gpu=True))


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
