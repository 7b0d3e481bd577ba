"""``python -m pytest_moeperf merge``: several runs as one document, later files win."""

from __future__ import annotations

import json

from pytest_moeperf.__main__ import main


def _doc(*benches, failed=(), gpu="GPU-a"):
    return {"machine_info": {"gpu": {"name": "NVIDIA H200", "uuid": gpu}}, "commit_info": {"id": gpu},
            "benchmarks": [{"name": f"test_generate[{n}]", "fullname": f"t::test_generate[{n}]", "param": n,
                            "extra_info": {"tpot_ms": v}, "stats": {}} for n, v in benches],
            "moeperf_failed": [{"fullname": f"t::test_generate[{n}]", "case": n, "error": "OOM"} for n in failed]}


def test_later_file_wins_and_each_case_keeps_its_gpu(tmp_path, capsys):
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "m.json"
    a.write_text(json.dumps(_doc(("x", 1.0), ("y", 2.0), failed=("z",))))
    b.write_text(json.dumps(_doc(("y", 3.0), ("z", 4.0), gpu="GPU-b")))
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    merged = json.loads(out.read_text())
    got = {x["param"]: (x["extra_info"]["tpot_ms"], x["extra_info"]["gpu_uuid"]) for x in merged["benchmarks"]}
    assert got == {"x": (1.0, "GPU-a"), "y": (3.0, "GPU-b"), "z": (4.0, "GPU-b")}
    assert merged["moeperf_failed"] == []  # z measured later: its failure is cleared
    assert merged["machine_info"]["gpu"]["uuid"] == "GPU-a" and merged["moeperf_sources"] == [str(a), str(b)]
    assert "3 benchmarks" in capsys.readouterr().err


def test_not_a_benchmark_document_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"benchmarks\": 3}")
    assert main(["merge", str(bad), "-o", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no 'benchmarks' list" in err
    bad.write_text("{oops")
    assert main(["merge", str(bad), "-o", str(tmp_path / "m.json")]) == 2
    assert "not JSON" in capsys.readouterr().err
