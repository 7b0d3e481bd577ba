"""A full disk (issue 27 item 7): the results log's append failing with ENOSPC stops the run in one
line keeping every finished case; whole documents are written atomically and a failed write names
its file. ENOSPC is injected where the kernel reports it for a full disk (fsync, the write)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pytest_moeperf.__main__ import main
from pytest_moeperf.results import outputs
from pytest_moeperf.results.results_log import LogWriteError, ResultsLog

ROOT = Path(__file__).resolve().parents[1]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full(*_args, **_kwargs):
    raise ENOSPC


def test_a_document_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "doc.json"
    out.write_text("old")
    monkeypatch.setattr(os, "fsync", _full)
    with pytest.raises(outputs.WriteError, match=r"doc.json: cannot write \(No space left on device\)"):
        outputs.write_atomic(out, "new" * 1000)
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]
    monkeypatch.undo()
    outputs.write_atomic(out, "new")
    assert out.read_text() == "new"


def _log_with_a_case(tmp_path: Path) -> Path:
    log = ResultsLog(str(tmp_path / "r.jsonl"))
    log.case_finished({"name": "test_generate[x]", "fullname": "b.py::test_generate[x]", "extra_info": {"tpot_ms": 1.0}})
    return tmp_path / "r.jsonl"


@pytest.mark.parametrize("command", [["results", "{log}", "--json", "{out}"], ["merge", "{doc}", "-o", "{out}"]])
def test_cli_documents_on_a_full_disk_are_one_line_naming_the_file(tmp_path, monkeypatch, capsys, command):
    log = _log_with_a_case(tmp_path)
    assert main(["results", str(log), "--json", str(tmp_path / "doc.json")]) == 0
    out = tmp_path / "sub" / "out.json"
    out.parent.mkdir()
    out.write_text("previous")
    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", _full)
    args = [a.format(log=log, out=out, doc=tmp_path / "doc.json") for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: {out}: cannot write (No space left on device); it is left as it was: free space "
                       f"or give another path"), err
    assert out.read_text() == "previous" and os.listdir(out.parent) == ["out.json"]


def test_a_failed_append_raises_one_line_after_the_callback(tmp_path, monkeypatch):
    log = ResultsLog(str(tmp_path / "r.jsonl"))
    seen = []
    log.on_write_error = seen.append
    monkeypatch.setattr(os, "fsync", _full)
    with pytest.raises(LogWriteError, match=r"--moeperf-results .*r.jsonl: cannot append a record \(No space left"):
        log.case_failed("b.py::t", "x", "boom")
    assert len(seen) == 1 and isinstance(seen[0], LogWriteError)


# the third append to the results log (session, first case, second case) finds the disk full
FULL_AFTER_TWO = """
import builtins, errno, os

_open, _appends = builtins.open, [0]


class FullDisk:
    def __init__(self, fh):
        self._fh = fh

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def open_(file, mode="r", *args, **kwargs):
    fh = _open(file, mode, *args, **kwargs)
    if str(file).endswith("r.jsonl") and "a" in mode:
        _appends[0] += 1
        if _appends[0] >= 3:
            return FullDisk(fh)
    return fh


builtins.open = open_
"""


@pytest.mark.e2e
def test_results_log_on_a_full_disk_stops_the_run_keeping_the_finished_cases(pytester):
    bench = pytester.path / "benchmarks"
    bench.mkdir()
    (bench / "test_deployment.py").write_text((ROOT / "benchmarks" / "test_deployment.py").read_text())
    pytester.makeconftest(FULL_AFTER_TWO)
    log, bjson = pytester.path / "r.jsonl", pytester.path / "bench.json"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--moeperf-gate", "off", "--moeperf-results", str(log), "--benchmark-json",
        str(bjson), "--moeperf-models", "tiny-dense", "--moeperf-contexts", "64,80,96", "--moeperf-rounds", "2",
        "--moeperf-new-tokens", "4", "benchmarks")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    stops = [ln for ln in out.splitlines() if "cannot append a record (No space left on device)" in ln]
    assert len(stops) == 1 and "--moeperf-resume" in stops[0], out
    records = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
    assert [r["type"] for r in records] == ["session", "case"]  # c64, kept
    assert "c64" in records[1]["benchmark"]["name"]
    names = sorted(b["name"] for b in json.loads(bjson.read_text())["benchmarks"])
    assert [n.split("-")[2] for n in names] == ["c64", "c80"]  # c80 was measured: its numbers are kept there
    assert "c96" not in out.split("cannot append")[0].split("PASSED")[-1]


def test_results_json_writes_null_for_nan(tmp_path):
    """Issue 27 item 10: `results --json` wrote a literal NaN, which strict JSON readers refuse."""
    log = ResultsLog(str(tmp_path / "r.jsonl"))
    log.case_finished({"name": "test_generate[x]", "fullname": "b.py::test_generate[x]",
                       "extra_info": {"tpot_ms": float("nan"), "energy_cv": float("inf"), "samples": {"tpot_ms": [1.0, float("nan")]}}})
    assert main(["results", str(tmp_path / "r.jsonl"), "--json", str(tmp_path / "run.json")]) == 0
    text = (tmp_path / "run.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    extra = json.loads(text)["benchmarks"][0]["extra_info"]
    assert extra["tpot_ms"] is None and extra["energy_cv"] is None and extra["samples"]["tpot_ms"] == [1.0, None]
