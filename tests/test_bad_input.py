"""Bad and odd inputs (issue 15): pure unit tests of the rules, and a hypothesis property test of
the results-log reader and the command line's loaders. The pytest paths are in test_bad_input_e2e.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_moeperf.results import outputs
from pytest_moeperf.model.cases import Case
from pytest_moeperf.measure.run_options import check_case, check_unique_cases, parse_options
from pytest_moeperf.results.outputs import drop_unfinished
from pytest_moeperf.settings.parsers import parse_int, parse_ints, parse_list
from pytest_moeperf.results.results_log import ResultsLog, options_settings


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


def _run_outputs(results: str, bench_json, **given):
    """check_run_outputs as pytest_configure calls it, --benchmark-json as pytest-benchmark hands it over."""
    from types import SimpleNamespace

    values = {"moeperf_gate": "off", "moeperf_results": results, "benchmark_json": bench_json, **given}
    outputs.check_run_outputs(values.get, SimpleNamespace(results_path=results), given_only=True)


@pytest.mark.parametrize("as_given", [Path, str], ids=["5.3-path", "str"])
def test_run_outputs_see_the_whole_benchmark_json_path(tmp_path, monkeypatch, as_given):
    """pytest-benchmark 5.3 hands --benchmark-json over as a Path: its whole path is checked, not
    its last part (issue 27 item 1), with nested relative paths as a user types them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="--moeperf-results and --benchmark-json both write out/r.jsonl"):
        _run_outputs("out/r.jsonl", as_given("out/r.jsonl"))
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(ValueError, match="--benchmark-json: cannot create README.md/x.json: .*README.md is a file"):
        _run_outputs("r.jsonl", as_given("README.md/x.json"))
    _run_outputs("r.json", as_given("sub/r.json"))  # same last part, different files: accepted
    os.symlink(tmp_path / "out" / "r.jsonl", tmp_path / "alias.json")
    with pytest.raises(ValueError, match=r"both write alias.json \(--moeperf-results out/r.jsonl, --benchmark-json "
                                         r"alias.json: the same file .*out/r.jsonl\)"):
        _run_outputs("out/r.jsonl", as_given("alias.json"))
    with pytest.raises(ValueError, match="--moeperf-verdict-json and --benchmark-json both write"):
        _run_outputs("r.jsonl", as_given("out/v.json"), moeperf_gate="auto", moeperf_verdict_json="out/./v.json")


def test_run_outputs_read_the_52_open_file_by_its_path(tmp_path, monkeypatch):
    """pytest-benchmark 5.2 opened --benchmark-json with argparse.FileType: the handle's name is the path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with open("out/r.jsonl", "wb") as handle, pytest.raises(ValueError, match="both write"):
        _run_outputs("out/r.jsonl", handle)


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


def test_preset_configs_give_their_own_architecture():
    from pytest_moeperf.model.loading import architecture_of
    from pytest_moeperf.model.presets import PRESETS, get_preset

    for name in PRESETS:
        preset = get_preset(name)
        assert architecture_of(preset.make_config(), "?") == preset.architecture, name


def test_a_moe_checkpoint_under_a_dense_name_is_labelled_moe(tiny_checkpoint):
    """Issue 27 item 10: --moeperf-weights tiny-dense=<a tiny-moe checkpoint> labelled the run dense."""
    from pytest_moeperf.model.loading import load_model

    loaded = load_model("tiny-dense", device="cpu", dtype="fp32", checkpoint=str(tiny_checkpoint("tiny-moe")))
    assert loaded.preset.architecture == "dense" and loaded.architecture == "moe"
