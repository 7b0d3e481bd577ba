"""`python -m pytest_moeperf results LOG [--json OUT]` reads the log as a stream (issue 29.5): records one at a
time, the rebuilt document written benchmark by benchmark, and the same document as the in-memory build."""

from __future__ import annotations

import json
import weakref

import pytest

from pytest_moeperf.__main__ import main
from pytest_moeperf.results import log_document, results_log
from pytest_moeperf.results.log_document import to_benchmark_document
from pytest_moeperf.results.results_cli import summarize
from pytest_moeperf.results.results_log import iter_log_lines, json_text, read_log


class Rec(dict):  # a dict that can be watched with a weak reference
    pass


def _case(name: str, **extra) -> dict:
    return {"type": "case", "fingerprint": "f1", "benchmark": {
        "name": f"test_generate[{name}]", "fullname": f"b::t[{name}]", "param": name,
        "extra_info": {"ttft_ms": 1.5, "samples": {"ttft_ms": [1.0, 2.0]}, **extra}}}


def test_iter_log_lines_yields_each_record_before_reading_the_next_line():
    """A source of lines that refuses to run ahead of the consumer: reading the log whole first fails."""
    consumed = []

    def lines():
        for i in range(5):
            assert len(consumed) >= i - 1, "the next line was read before the record before it was handed on"
            yield json.dumps(_case(f"c{i}"))

    for rec in iter_log_lines(lines(), "w", [], strict=True):
        consumed.append(rec["benchmark"]["param"])
    assert consumed == [f"c{i}" for i in range(5)]


def test_results_summary_keeps_no_record():
    """summarize() over a source that checks, before handing on each record, that the ones handed on before the
    last are gone: the listing, the settings and the document's index hold no record."""
    alive: list[weakref.ref] = []

    def records():
        for i in range(6):
            assert sum(r() is not None for r in alive) <= 1, "earlier records are still held"
            rec = Rec(_case(f"c{i}")) if i % 3 else Rec({"type": "session", "fingerprint": "f1", "settings": {},
                                                          "machine_info": {"gpu": {"uuid": f"GPU-{i}"}}})
            alive.append(weakref.ref(rec))
            yield rec, (i, 0)

    ok, failed, seen, doc = summarize("log", [], records())
    assert len(ok) == 4 and not failed and seen.note() is None
    assert [w for w, _ in doc.by_name.values()] == [(1, 0), (2, 0), (4, 0), (5, 0)]  # where each case lies


def test_results_json_is_the_in_memory_document_written_piece_by_piece(tmp_path, capsys, monkeypatch):
    """Newest record wins (a later failure drops a case, a later success drops the failure), each case keeps
    its session's GPU, the first appearance gives the order, a torn line is skipped: byte for byte what
    json_text(to_benchmark_document(read_log(LOG))) gives, NaN written as null."""
    lines = [{"type": "session", "fingerprint": "f1", "machine_info": {"gpu": {"uuid": "GPU-a"}}},
             _case("a"), _case("b", ttft_ms=float("nan")), _case("c"),
             {"type": "failed", "fullname": "b::t[c]", "case": "c", "error": "OOM"},
             {"type": "failed", "fullname": "b::t[d]", "case": "d", "error": "boom"},
             {"type": "session", "fingerprint": "f1", "machine_info": {"gpu": {"uuid": "GPU-b"}}},
             _case("a", ttft_ms=2.5), _case("d"), json.dumps(_case("e"))[:40], _case("f")]
    log = tmp_path / "r.jsonl"
    log.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    monkeypatch.setattr(results_log, "_now", lambda: "2026-12-02T00:00:00")
    monkeypatch.setattr(log_document, "_now", lambda: "2026-12-02T00:00:00")
    out = tmp_path / "run.json"
    assert main(["results", str(log), "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert "6 finished, 2 failed" in printed.out and "cut short" in printed.err
    expected = json_text(to_benchmark_document(read_log(str(log), [])))
    assert out.read_text() == expected
    doc = json.loads(expected)
    assert [b["param"] for b in doc["benchmarks"]] == ["a", "b", "d", "f"]
    assert [b["extra_info"]["gpu_uuid"] for b in doc["benchmarks"]] == ["GPU-b", "GPU-a", "GPU-b", "GPU-b"]
    assert doc["benchmarks"][0]["extra_info"]["ttft_ms"] == 2.5 and doc["benchmarks"][1]["extra_info"]["ttft_ms"] is None
    assert doc["moeperf_failed"] == [{"fullname": "b::t[c]", "case": "c", "error": "OOM"}]


@pytest.mark.parametrize("cases", [0, 1])
def test_results_json_of_no_or_one_case_is_valid_json(tmp_path, cases):
    log = tmp_path / "r.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in [{"type": "session", "machine_info": {}}]
                           + [_case("a")] * cases))
    assert main(["results", str(log), "--json", str(tmp_path / "o.json")]) == 0
    assert len(json.loads((tmp_path / "o.json").read_text())["benchmarks"]) == cases


def test_resume_reads_the_log_as_a_stream_too():
    """--moeperf-resume's view of a log (results_log._Latest) keeps per case its latest record's type,
    fingerprint and kind, never the record: over a source that checks the ones handed on before are gone."""
    from pytest_moeperf.results.results_log import _Latest

    alive: list[weakref.ref] = []

    def records():
        for i, rec in enumerate([{"type": "session", "fingerprint": "f2", "settings": {"rounds": 5}}, _case("a"),
                                 _case("b"), {**_case("a"), "fingerprint": "f2"},
                                 {"type": "failed", "fullname": "b::t[b]", "case": "b", "error": "OOM"}]):
            assert sum(r() is not None for r in alive) <= 1, "earlier records are still held"
            rec = Rec(rec)
            alive.append(weakref.ref(rec))
            yield rec

    log = _Latest(records())
    assert log.by_case == {"a": ("case", "f2", "case"), "b": ("failed", None, None)}  # a failed record: no print
    assert log.settings == {"f2": {"rounds": 5}}
