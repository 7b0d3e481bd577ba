"""``python -m pytest_moeperf report``: tables, units, plots, --against, bad input."""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_moeperf.metrics import derived
from pytest_moeperf.report import cli as report_cli
from pytest_moeperf.report import report_format
from pytest_moeperf.report import rows as report_rows
from pytest_moeperf.report import tables as report_tables
from pytest_moeperf.model.cases import Case
from pytest_moeperf.metrics.schema import METRICS, REQUIRED_KEYS

ROOT = Path(__file__).resolve().parents[1]
PAPER_BASELINE = ROOT / "baselines" / "h100" / "paper-h100.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENERGY_REASON = "no NVML energy counter on device 'cpu'"

MODELS = {
    "tiny-moe": {"architecture": "moe", "params_total": 8_000_000, "params_active": 2_000_000},
    "tiny-dense": {"architecture": "dense", "params_total": 4_000_000, "params_active": 4_000_000},
}


def _bench(case: Case, *, cpu: bool, scale: float = 1.0, **overrides) -> dict:
    info = MODELS.get(case.model, {"architecture": "moe" if "moe" in case.model else "dense",
                                   "params_total": 20_900_000_000, "params_active": 3_610_000_000})
    moe = info["architecture"] == "moe"
    slow = (1.0 if moe else 1.6) * (1 + case.context_tokens / 1024) * scale
    ttft = 20.0 * slow
    tpot = 5.0 * slow
    e2e = ttft + tpot * (case.new_tokens - 1)
    ei = {
        "model": case.model, "architecture": info["architecture"], "weights": f"test/{case.model}",
        "dtype": case.dtype, "backend": case.backend, "device_name": "cpu" if cpu else "NVIDIA H200",
        "context_tokens": case.context_tokens, "new_tokens": case.new_tokens, "batch_size": case.batch_size,
        "decoding": case.decoding, "params_total": info["params_total"], "params_active": info["params_active"],
        "rounds": 3 if cpu else 10, "energy_unavailable": ENERGY_REASON if cpu else None,
        "ttft_ms": ttft, "ttft_ms_p95": ttft * 1.05, "tpot_ms": tpot, "itl_ms_p50": tpot, "itl_ms_p95": tpot * 1.1,
        "e2e_ms_p50": e2e, "e2e_ms_p95": e2e * 1.02,
        "decode_tokens_per_s": 1000.0 / tpot, "e2e_tokens_per_s": case.new_tokens / (e2e / 1000.0),
        "weights_bytes": None if cpu else int(2e9 * (1 if moe else 1.5)),
        "peak_allocated_bytes": None if cpu else int(2.2e9 * (1 if moe else 1.5)),
        "peak_reserved_bytes": None if cpu else int(2.5e9 * (1 if moe else 1.5)),
        "peak_rss_bytes": int(3e8 * (1 if moe else 1.4)) if cpu else None,
        "kv_cache_bytes": 4096 * case.context_tokens, "kv_cache_measured_bytes": 4096 * case.context_tokens,
        "energy_j": None if cpu else 0.3 * e2e, "tokens_per_j": None if cpu else case.new_tokens / (0.3 * e2e),
        "j_per_1k_tokens": None if cpu else 1000 * 0.3 * e2e / case.new_tokens,
        "samples": {"ttft_ms": [ttft] * 3, "e2e_ms": [e2e] * 3},
    }
    ei.update(derived.efficiency(ei))  # as measure.py fills them
    ei.update(overrides)
    assert set(REQUIRED_KEYS) <= set(ei)
    return {
        "group": None, "name": f"test_generate[{case.case_id}]", "fullname": case.fullname,
        "params": {"case": case.case_id}, "param": case.case_id, "extra_info": ei, "options": {},
        "stats": {"min": e2e / 1000 * 0.98, "max": e2e / 1000 * 1.03, "mean": e2e / 1000, "stddev": 0.001,
                  "rounds": ei["rounds"], "median": e2e / 1000, "iterations": 1},
    }


def _doc(benchmarks: list[dict], *, cpu: bool) -> dict:
    machine = {"node": "test", "python_version": "3.11.2", "torch_version": "2.9.0",
               "transformers_version": "5.17.0", "moeperf_version": "0.1.0"}
    if not cpu:
        machine.update(cuda_version="12.8", gpu={"name": "NVIDIA H200", "memory_total_bytes": 150_754_820_096,
                                                 "driver": "570.124.06"})
    return {"machine_info": machine,
            "commit_info": {"id": "0123456789abcdef0123", "branch": "main", "dirty": True},
            "benchmarks": benchmarks, "datetime": "2025-11-29T12:00:00+00:00", "version": "5.2.3"}


def cpu_run() -> dict:
    return _doc([_bench(Case(m, c, 16), cpu=True) for m in MODELS for c in (64, 128)], cpu=True)


def full_run(scale: float = 1.0) -> dict:
    benches = [_bench(Case(m, c, 16), cpu=False, scale=scale) for m in MODELS for c in (64, 128, 256)]
    benches += [
        _bench(Case("tiny-moe", 128, 16, decoding="top_p0.9"), cpu=False, scale=scale * 1.02),
        _bench(Case("tiny-moe", 128, 16, decoding="temp1.5"), cpu=False, scale=scale * 1.01),
        _bench(Case("tiny-moe", 128, 16, dtype="fp32"), cpu=False, failed=True,
               error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail"),
        _bench(Case("tiny-moe", 128, 16, backend="static"), cpu=False, scale=scale * 0.7),
        _bench(Case("tiny-moe", 128, 16, batch_size=4), cpu=False, scale=scale),
    ]
    return _doc(benches, cpu=False)


def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def _run(results: Path, out: Path, against: Path | None = None) -> str:
    args = argparse.Namespace(results=str(results), against=str(against) if against else None, output=str(out))
    assert report_cli.run(args) == 0
    return (out / "report.md").read_text(encoding="utf-8")


def _assert_plots(out: Path) -> None:
    for name in report_tables.PLOT_FILES:
        data = (out / name).read_bytes()
        assert len(data) > 1000, name
        assert data.startswith(PNG_SIGNATURE), name


def _table_lines(md: str, title_prefix: str) -> list[str]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title_prefix))
    out = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            out.append(line)
    return out


def _column(table: list[str], header: str) -> list[str]:
    """The cells under ``header`` in the first of the table's parts that has it (wide tables are split)."""
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
    starts = [i for i in range(len(cells) - 1) if set(cells[i + 1]) == {"---"}]
    for start, end in zip(starts, starts[1:] + [len(cells)]):
        if header in cells[start]:
            idx = cells[start].index(header)
            return [row[idx] for row in cells[start + 2:end]]
    raise ValueError(f"{header!r} is in no part of the table")


# --- the CPU-shaped run, through the real command line ----------------------------------------


@pytest.mark.e2e
def test_cpu_run_via_subprocess(tmp_path):
    results = _write(tmp_path / "cpu.json", cpu_run())
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "pytest_moeperf", "report", str(results), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    for n in range(1, 9):
        assert re.search(rf"^### Table {n}:", md, re.M), f"Table {n} missing"
    for unit in ("TTFT (ms)", "TPOT (ms/token)", "Decode throughput (tokens/s)", "(tokens/s)", "Weights (",
                 "Peak allocated (", "Energy per generate() (J)", "Tokens per joule (tokens/J)",
                 "(J/1k tokens)", "(tokens/s/B)", "Peak RSS ("):
        assert unit in md, unit
    # memory columns in the unit that fits each: no size prints as 0.00
    t5 = _table_lines(md, "### Table 5")
    headers = {c.strip() for line in t5 for c in line.strip("|").split(" | ")}
    for prefix in ("Weights (", "Peak RSS ("):
        cells = _column(t5, next(h for h in headers if h.startswith(prefix)))
        assert all(float(c.replace(",", "")) >= 1 for c in cells if c != "—"), (prefix, cells)
    # both throughputs, clearly named
    assert "Decode throughput (tokens/s)" in md and "E2E throughput incl. prefill" in md
    # energy is null on CPU: a dash with a footnote carrying the reason
    assert "—[^" in md and ENERGY_REASON in md
    # metadata and definitions
    assert "torch" in md and "2.9.0" in md and "5.17.0" in md and "0123456789ab" in md
    for m in METRICS:
        assert f"`{m.key}`" in md
    # no ablation cases in this run: no Tables 9-12
    assert "### Table 9" not in md and "### Table 11" not in md
    _assert_plots(out)
    # the MoE model is the reference for Table 5: 0 for itself, > 0 % less vs the dense model
    t5 = _table_lines(md, "### Table 5")
    less = _column(t5, "% less for tiny-moe vs this model (%)")
    assert less[0] == "0.00" and float(less[1]) > 0


def test_largest_context_rows(tmp_path):
    md = _run(_write(tmp_path / "cpu.json", cpu_run()), tmp_path / "out")
    # Table 1's context is the same in every row: said once above the table, not in a column
    assert "_All rows: Context (tokens): 128; New tokens: 16._" in md
    assert "Context (tokens)" not in _table_lines(md, "### Table 1:")[0]
    t2 = _table_lines(md, "### Table 2")
    assert _column(t2, "Context (tokens)") == ["64", "64", "128", "128"]
    t4 = _table_lines(md, "### Table 4")
    assert _column(t4, "Context (tokens)") == ["64 → 128", "64 → 128"]
    assert all(v.startswith("-") for v in _column(t4, "Δ decode vs smallest (%)"))


# --- a run with every metric, in-process, with ablations and --against --------------------------


def test_full_run_with_against(tmp_path):
    results = _write(tmp_path / "run.json", full_run())
    base_doc = full_run(scale=0.8)  # the baseline is faster: latencies 25% higher in the run
    base_doc["machine_info"]["gpu"]["name"] = "NVIDIA H100 80GB HBM3"
    baseline = _write(tmp_path / "base.json", base_doc)
    out = tmp_path / "out"
    md = _run(results, out, baseline)
    for n in range(1, 13):
        if n == 10:
            continue
        assert re.search(rf"^### Table {n}:", md, re.M), f"Table {n} missing"
    assert "### Table 10:" in md  # three contexts per model: context scaling
    assert "NVIDIA H100 80GB HBM3" in md and "NVIDIA H200" in md and "570.124.06" in md
    t1 = _table_lines(md, "### Table 1:") + _table_lines(md, "### Table 1b:")
    header = "".join(t1)
    # the unit once, in the metric's header; its baseline and change columns right after it
    for col in ("| TTFT (ms) | TTFT baseline | TTFT Δ % |", "| Decode throughput (tokens/s) | Decode baseline |",
                "E2E Δ %"):
        assert col in header, col
    assert set(_column(t1, "TTFT Δ %")) == {"+25.0"}
    assert set(_column(t1, "Decode Δ %")) == {"-20.0"}
    # no table is wider than report_format.MAX_COLUMNS: Table 1 was 18 columns before issue 19
    widths = [line.count(" | ") + 1 for line in md.splitlines() if line.startswith("| ")]
    assert max(widths) <= report_format.MAX_COLUMNS
    t6 = _table_lines(md, "### Table 6")
    assert "J/1k tokens baseline" in "".join(t6) and "tokens/J Δ %" in "".join(t6)
    # ablations: decoding, precision (failed, one-line error), serving stack; batch in "Other cases"
    assert "top_p0.9" in md and "temp1.5" in md
    t11 = _table_lines(md, "### Table 11")
    assert any("failed" in line for line in t11)
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in md
    assert "more detail" not in md
    t12 = _table_lines(md, "### Table 12")
    assert _column(t12, "Backend") == ["eager", "static"]
    assert "### Other cases" in md and "tiny-moe-c128-n16-b4" in md
    _assert_plots(out)


def test_against_paper_compares_like_with_like(tmp_path):
    """A run with the paper's case ids: e2e tokens/s is compared with the paper's "TPOT", decode is not."""
    benches = [_bench(Case(m, c, 64), cpu=False) for m in ("gpt-oss-20b", "qwen3-32b") for c in (128, 2048)]
    benches.append(_bench(Case("gpt-oss-20b", 128, 64, decoding="top_k50"), cpu=False))
    results = _write(tmp_path / "run.json", _doc(benches, cpu=False))
    md = _run(results, tmp_path / "out", PAPER_BASELINE)
    t1 = _table_lines(md, "### Table 1:")
    t1b = _table_lines(md, "### Table 1b:")
    assert 'paper "TPOT"' in t1b[0]  # the paper's name for its figure, next to ours where compared
    assert "Decode paper" not in t1b[0]
    assert _column(t1b, 'paper "TPOT"') == ["31.27", "23.73"]
    assert _column(t1, "TTFT paper") == ["459.72", "369.46"]
    assert "Not compared, the paper has no value under the same definition" in md
    t8 = _table_lines(md, "### Table 8")
    assert _column(t8, 'paper "APE-TPOT"') == ["8.664", "0.742"]
    assert "APE decode paper" not in "".join(t8)
    # Table 9: the greedy reference is matched to the paper's Table 9 row, not Table 2's
    t9 = _table_lines(md, "### Table 9")
    assert _column(t9, 'paper "TPOT"') == ["39.45", "38.97"]
    assert "How the paper's definitions map onto ours" in md
    assert "(model variant not stated)" in md


def test_paper_baseline_renders_all_tables(tmp_path):
    md = _run(PAPER_BASELINE, tmp_path / "out")
    for n in range(1, 13):
        assert re.search(rf"^### Table {n}:", md, re.M), f"Table {n} missing"
    assert "_All rows: Context (tokens): 2048; New tokens: 64._" in md
    assert "dtype mismatch (paper)" in md and "not run" in md


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty", "not-a-document"])
def test_bad_input_exit_2_one_line(tmp_path, kind):
    path = tmp_path / f"{kind}.json"
    if kind == "corrupt":
        _write(path, '{"benchmarks": [')
    elif kind == "empty":
        _write(path, {"machine_info": {}, "benchmarks": []})
    elif kind == "not-a-document":
        _write(path, [1, 2, 3])
    proc = subprocess.run([sys.executable, "-m", "pytest_moeperf", "report", str(path), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "report.md").exists()


def test_bad_input_raises_value_error(tmp_path):
    good = _write(tmp_path / "good.json", cpu_run())
    with pytest.raises(ValueError, match="no such file"):
        _run(tmp_path / "nope.json", tmp_path / "out")
    with pytest.raises(ValueError, match=r"bad\.json: not JSON"):
        _run(_write(tmp_path / "bad.json", "not json"), tmp_path / "out")
    with pytest.raises(ValueError, match=r"base\.json: no benchmarks"):
        _run(good, tmp_path / "out", _write(tmp_path / "base.json", {"benchmarks": ["x"]}))


def test_robust_to_missing_keys(tmp_path):
    doc = cpu_run()
    sparse = copy.deepcopy(doc)
    for b in sparse["benchmarks"]:
        b["extra_info"] = {k: v for k, v in b["extra_info"].items()
                           if k in ("model", "context_tokens", "new_tokens", "ttft_ms", "e2e_tokens_per_s")}
        b.pop("params")
        b.pop("stats")
    sparse.pop("machine_info")
    sparse.pop("commit_info")
    md = _run(_write(tmp_path / "sparse.json", sparse), tmp_path / "out")
    assert "### Table 8:" in md
    t3 = _table_lines(md, "### Table 3")
    assert len(t3) == 2 + 4  # axes from extra_info, metrics missing


def test_axes_come_from_extra_info_not_from_the_id(tmp_path):
    doc = cpu_run()
    for b in doc["benchmarks"]:  # an id that says one thing, extra_info another: extra_info wins
        b["param"] = b["name"] = "renamed-c9-n9-fp32-static"
        b["fullname"] = f"t::{b['fullname']}"
    rows = report_rows.load_results(_write(tmp_path / "r.json", doc)).rows
    assert {(r.model, r.context, r.new_tokens) for r in rows} == {(m, c, 16) for m in MODELS for c in (64, 128)}
    assert all(r.core and r.axes["dtype"] == "bf16" for r in rows)
    for b in doc["benchmarks"]:
        b["extra_info"] = {"ttft_ms": 1.0}  # no axes at all: shown under its id, never guessed from it
    row = report_rows.load_results(_write(tmp_path / "r.json", doc)).rows[0]
    assert (row.model, row.context, row.axes) == ("renamed-c9-n9-fp32-static", None, {})
