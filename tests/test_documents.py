"""The document store (results/documents.py): one reader for every pytest-benchmark document the
gate, history, the report and merge read; one line per unusable file; one test of a benchmark's kind."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_moeperf.results import documents
from pytest_moeperf.results.documents import CASE, SERVING, DocumentError


def _write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@pytest.mark.parametrize(("content", "words"), [
    (None, "no such file"),
    ("{oops", "not JSON (Expecting property name enclosed in double quotes at line 1 column 2); regenerate it"),
    ("[1, 2]", "not a pytest-benchmark JSON document (no 'benchmarks' list)"),
    ('{"benchmarks": {}}', "no 'benchmarks' list"),
    ('{"type": "session", "machine_info": {}}\n{"type": "failed"}\n', "a results log (JSON lines), not a run"),
    (b"\xff\xfe{", "not a text (UTF-8) file"),
])
def test_every_unusable_file_is_one_line_naming_it(tmp_path, content, words):
    path = tmp_path / "run.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        _write(path, content)
    with pytest.raises(DocumentError) as info:
        documents.read_document(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message


def test_a_folder_is_not_a_document_but_is_a_storage(tmp_path):
    with pytest.raises(DocumentError, match="is a directory, not a JSON file"):
        documents.read_document(tmp_path)
    with pytest.raises(DocumentError, match="folder holds no \\*.json runs"):
        documents.load_documents(tmp_path)
    (tmp_path / "machine").mkdir()
    _write(tmp_path / "machine" / "0001_a.json", {"benchmarks": []})
    _write(tmp_path / "0002_b.json", {"benchmarks": [{"name": "t"}]})
    newest, = documents.load_documents(tmp_path)
    assert newest[documents.SOURCE_KEY].endswith("0002_b.json")
    assert len(documents.load_documents(tmp_path, all_runs=True)) == 2
    assert documents.has_runs(tmp_path) and not documents.has_runs(tmp_path / "absent")


def test_read_checks_the_top_level_and_load_every_benchmark(tmp_path):
    path = _write(tmp_path / "run.json", {"benchmarks": [{"extra_info": {}}]})
    assert documents.read_document(path)["benchmarks"] == [{"extra_info": {}}]  # the report tolerates it
    with pytest.raises(DocumentError, match=r"benchmarks\[0\] has no 'fullname' or 'name'"):
        documents.load_document(path)
    _write(path, {"benchmarks": [{"name": "t", "extra_info": []}]})
    with pytest.raises(DocumentError, match=r"benchmarks\[0\].extra_info is not an object"):
        documents.load_document(path)


def test_the_gate_error_is_the_document_error():
    from pytest_moeperf.gate.config import BaselineError

    assert BaselineError is DocumentError and issubclass(DocumentError, ValueError)


@given(st.dictionaries(st.sampled_from(["load_point", "ttft_ms", "model", "load_mode"]), st.integers()))
def test_a_benchmark_is_a_serving_point_exactly_when_it_names_its_load_point(extra):
    kind = documents.benchmark_kind({"name": "t", "extra_info": extra})
    assert kind == (SERVING if "load_point" in extra else CASE)
    assert documents.benchmark_kind({"name": "t"}) == documents.extra_kind(None) == CASE


def test_the_device_a_document_names():
    h200 = {"machine_info": {"gpu": {"name": "NVIDIA H200", "uuid": "GPU-1"}}, "benchmarks": []}
    cpu = {"machine_info": {}, "benchmarks": [{"extra_info": {"device_name": "cpu (x86_64)"}}]}
    assert documents.device_name(h200) == "NVIDIA H200" and documents.gpu_uuid(h200) == "GPU-1"
    assert documents.device_name(cpu) == documents.CPU and documents.gpu_name(cpu) is None
    assert documents.device_name({"benchmarks": []}) is None
    assert documents.gpu_slug("NVIDIA H200") == "h200" and documents.gpu_slug("Tesla V100-SXM2") == "v100"
