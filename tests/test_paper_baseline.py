"""The paper baseline (baselines/h100/paper-h100.json) is reproducible and transcribed exactly.

The transcription checks read the paper's text: /work/shared/seed/000_77f7fbe24c594291.txt, or
the file named by $MOEPERF_PAPER_TEXT; they are skipped where neither exists.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_moeperf.model.cases import TEST_NODE
from pytest_moeperf.metrics.schema import CASE_METRICS, REQUIRED_KEYS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "make_paper_baseline.py"
COMMITTED = ROOT / "baselines" / "h100" / "paper-h100.json"
PAPER_TEXT = Path(os.environ.get("MOEPERF_PAPER_TEXT", "/work/shared/seed/000_77f7fbe24c594291.txt"))


def _load_script():
    spec = importlib.util.spec_from_file_location("make_paper_baseline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mpb = _load_script()


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def by_id(doc) -> dict:
    return {b["params"]["case"]: b for b in doc["benchmarks"]}


@pytest.fixture(scope="module")
def paper() -> str:
    if not PAPER_TEXT.exists():
        pytest.skip(f"paper text not found at {PAPER_TEXT} (set MOEPERF_PAPER_TEXT)")
    return PAPER_TEXT.read_text(encoding="utf-8")


# --- reproducibility ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_script_regenerates_committed_file(tmp_path):
    out = tmp_path / "paper-h100.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "-o", str(out)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8"), (
        "baselines/h100/paper-h100.json is out of date: run python tools/make_paper_baseline.py")


def test_check_mode(tmp_path):
    assert mpb.main(["--check", "-o", str(COMMITTED)]) == 0
    stale = tmp_path / "stale.json"
    stale.write_text("{}", encoding="utf-8")
    assert mpb.main(["--check", "-o", str(stale)]) == 1


# --- shape ----------------------------------------------------------------------------------------


def test_document_shape(doc):
    assert set(doc) >= {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    gpu = doc["machine_info"]["gpu"]
    assert gpu["name"] == "NVIDIA H100"
    assert "variant not stated" in gpu["source"]
    assert doc["commit_info"]["note"]
    names = [b["fullname"] for b in doc["benchmarks"]]
    assert len(names) == len(set(names))
    for b in doc["benchmarks"]:
        case = b["params"]["case"]
        assert b["name"] == f"test_generate[{case}]"
        assert b["fullname"] == f"{TEST_NODE}[{case}]"
        ei = b["extra_info"]
        missing = [k for k in REQUIRED_KEYS if k not in ei]
        assert not missing, (case, missing)
        assert ei["source"] == "paper" and ei["samples"] == {}
        assert ei["paper_table"] and isinstance(ei["paper_definitions"], dict)
        assert b["stats"]["rounds"] == 5
        # the paper reports no decode-only figures
        assert ei["decode_tokens_per_s"] is None and ei["tpot_ms"] is None


def test_core_matrix_and_ablation_ids(by_id):
    for model in ("gpt-oss-20b", "qwen3-32b", "yi-34b"):
        for ctx in (128, 512, 1024, 2048):
            assert f"{model}-c{ctx}-n64" in by_id
    expected = {
        "gpt-oss-20b-c128-n64-table9", "gpt-oss-20b-c128-n64-top_p0.9", "gpt-oss-20b-c128-n64-top_k50",
        "gpt-oss-20b-c128-n64-temp1.5", "gpt-oss-20b-c128-n64-temp0.3",
        "gpt-oss-20b-c512-n64-table10", "gpt-oss-20b-c1024-n64-table10", "gpt-oss-20b-c2048-n64-table10",
        "gpt-oss-20b-c4096-n64", "gpt-oss-20b-c128-n64-table11", "gpt-oss-20b-c128-n64-fp16",
        "gpt-oss-20b-c128-n64-fp32", "gpt-oss-20b-c128-n64-table12", "gpt-oss-20b-c128-n64-vllm",
    }
    assert expected <= set(by_id)
    assert len(by_id) == 12 + len(expected)
    for case in ("gpt-oss-20b-c128-n64-fp16", "gpt-oss-20b-c128-n64-fp32"):
        ei = by_id[case]["extra_info"]
        assert ei["failed"] is True and ei["error"] == "dtype mismatch (paper)"
    assert by_id["gpt-oss-20b-c128-n64-vllm"]["extra_info"]["not_run"] is True
    assert by_id["gpt-oss-20b-c4096-n64"]["extra_info"]["paper_table"] == "10"


def test_definition_mapping(by_id):
    g = by_id["gpt-oss-20b-c2048-n64"]
    ei = g["extra_info"]
    # the paper's "TPOT (tok/s)" is e2e tokens/s incl. prefill
    assert ei["e2e_tokens_per_s"] == ei["paper_e2e_tokens_per_s"] == 31.27
    assert ei["ttft_ms"] == 459.72
    assert (ei["e2e_ms_p50"], ei["e2e_ms_p95"]) == (2056.73, 2060.72)
    assert g["stats"]["median"] == pytest.approx(2.05673)
    # "Peak VRAM (MB)" are MiB
    assert ei["paper_peak_vram_mb"] == 43461
    assert ei["peak_allocated_bytes"] == 43461 * 2**20
    # baseline memory: GPT-OSS-20B's 41.8 GB are decimal (its bf16 bytes, 41.83e9), the dense models' 1000 MiB
    assert ei["weights_bytes"] == 41_800_000_000
    assert by_id["qwen3-32b-c2048-n64"]["extra_info"]["weights_bytes"] == 62_500 * 2**20
    # Tokens/W is tokens per joule
    assert ei["tokens_per_j"] == 0.102 and ei["j_per_1k_tokens"] == 9764.2
    assert ei["tokens_per_j"] == pytest.approx(1000 / ei["j_per_1k_tokens"], rel=0.01)
    assert (ei["ape_tpot"], ei["ape_inv_ttft"], ei["ape_energy"], ei["tokens_per_s_per_gb"]) == (
        8.664, 0.602, 0.0283, 0.719)
    assert (ei["params_total"], ei["params_active"]) == (20_900_000_000, 3_610_000_000)
    assert by_id["qwen3-32b-c2048-n64"]["extra_info"]["params_active"] == 32_000_000_000
    assert by_id["yi-34b-c2048-n64"]["extra_info"]["params_total"] == 34_000_000_000
    # Table 7 for every context
    assert [by_id[f"qwen3-32b-c{c}-n64"]["extra_info"]["j_per_1k_tokens"] for c in (128, 512, 1024, 2048)] == [
        10257.0, 12295.2, 12000.4, 13155.1]
    # Table 10 is stored apart from Table 2
    assert by_id["gpt-oss-20b-c2048-n64-table10"]["extra_info"]["e2e_tokens_per_s"] == 30.25
    # Table 9, 12 wall times
    assert by_id["gpt-oss-20b-c128-n64-table9"]["extra_info"]["e2e_ms_p50"] == 1622.0
    assert by_id["gpt-oss-20b-c128-n64-table12"]["stats"]["median"] == 1.683
    # APE-TPOT is the paper's e2e TPOT / active B (consistent to the paper's rounding)
    assert ei["ape_tpot"] == pytest.approx(31.27 / 3.61, rel=1e-3)
    assert ei["tokens_per_s_per_gb"] == pytest.approx(31.27 / (43461 / 1000), rel=1e-3)


def test_every_metric_key_is_present_or_null(by_id):
    for b in by_id.values():
        for m in CASE_METRICS:
            v = b["extra_info"][m.key]
            assert v is None or isinstance(v, (int, float))


# --- transcription against the paper's text ----------------------------------------------------


def _table_block(text: str, table: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {table}:"))
    block = []
    for line in lines[start + 1:]:
        if line.startswith(("Table ", "#", "Takeaway", "Trend")):
            break
        block.append(line)
    return block


def _numbers(line: str) -> set[float]:
    norm = line.replace("\\,", "").replace("−", "-")
    return {float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", norm)}


def test_seed_contains_spot_values(paper):
    for needle in ("459.72", "2056.73", "43 461", "9764.2", "0.0283", "21.78", "1.622",
                   "Failed to run (dtype mismatch)", "Not run (server out of scope)"):
        assert needle in paper, needle


def test_every_transcribed_value_is_in_the_paper(paper):
    checked = 0
    for table, row_label, column, value in mpb.transcribed_values():
        if table == "text":
            para = next(p for p in paper.split("\n\n") if "baseline memory" in p and "41.8" in p)
            assert value in _numbers(para), (row_label, column, value)
        else:
            rows = [line for line in _table_block(paper, table) if line.startswith(row_label)]
            assert rows, f"Table {table}: no row {row_label!r}"
            assert value in _numbers(rows[0]), f"Table {table} row {row_label!r} column {column!r}: {value}"
        checked += 1
    assert checked >= 100


def test_json_values_come_from_the_paper(paper, by_id):
    """Numbers in the JSON (not only the script's tables) are found in the paper's text."""
    allowed = _numbers(paper)
    keys = ("ttft_ms", "e2e_ms_p50", "e2e_ms_p95", "e2e_tokens_per_s", "tokens_per_j", "j_per_1k_tokens",
            "ape_tpot", "ape_inv_ttft", "ape_energy", "tokens_per_s_per_gb", "paper_peak_vram_mb",
            "paper_weights_gb")
    for case, b in by_id.items():
        for key in keys:
            v = b["extra_info"].get(key)
            if v is None:
                continue
            if key == "e2e_ms_p50" and b["extra_info"]["paper_table"] in ("9", "12"):
                v = round(v / 1000, 3)  # the paper prints seconds
            assert v in allowed, (case, key, v)
