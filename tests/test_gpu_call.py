"""tools/gpu_call.sh (a plan longer than one device call: start once, wait, pack, resume on a fresh
machine from the carried tarball) and tools/serving_rates.py (the Poisson rates of a plan)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import serving_rates  # noqa: E402

SERVING = ROOT / "baselines" / "h200-runs" / "2026-12-02" / "serving"


def test_rates_from_the_committed_sweep():
    recs = serving_rates.records(str(SERVING / "serving.jsonl"))
    # the committed job picked 0.388 and 0.698 req/s: 0.5x and 0.9x of gpt-oss-20b's best, 0.7754 req/s at 4 users
    assert serving_rates.rates(recs, "gpt-oss-20b", [0.5, 0.9]) == "0.388,0.698"
    assert serving_rates.rates(recs, "no-such-model", [0.5]) == ""
    assert serving_rates.main([str(SERVING / "serving.jsonl"), "no-such-model", "0.5"]) == 1


def test_failed_cases_are_found(tmp_path):
    log = tmp_path / "x.jsonl"
    log.write_text(json.dumps({"type": "case", "benchmark": {}}) + "\n{torn")
    assert serving_rates.main(["--failed", str(log)]) == 1
    log.write_text(json.dumps({"type": "failed", "fullname": "x"}) + "\n")
    assert serving_rates.main(["--failed", str(log)]) == 0


def _call(tmp_path: Path, plan: Path, machine: str, wait_s: str = "30") -> str:
    env = {**os.environ, "OUT": str(tmp_path / f"out-{machine}"), "GPU_CALL_DIR": str(tmp_path / machine),
           "GPU_CALL_CARRY": str(tmp_path / "carry")}
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_call.sh"), str(plan), wait_s], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.e2e
def test_start_wait_pack_and_resume_on_a_fresh_machine(tmp_path):
    plan = tmp_path / "p.plan"
    plan.write_text("0 a 30 echo a >> {OUT}/order\n0 b 30 test -e {OUT}/fixed\n")
    text = _call(tmp_path, plan, "m1")
    assert "started" in text and "plan ended" in text and "done steps: a" in text
    packed = tmp_path / "out-m1" / "p.tgz"
    with tarfile.open(packed) as tar:
        assert "p/order" in tar.getnames() and "p/DONE" in tar.getnames()
    assert (tmp_path / "out-m1" / "steps.tsv").read_text().count("\n") == 2
    # a fresh machine with the last tarball carried: nothing reruns (DONE), the output is packed again
    (tmp_path / "carry").mkdir()
    (tmp_path / "carry" / "p.tgz").write_bytes(packed.read_bytes())
    text = _call(tmp_path, plan, "m2")
    assert "resumed from" in text and "started" not in text
    assert (tmp_path / "m2" / "p" / "order").read_text().split() == ["a"]
    # delete DONE to retry the failed step: only b runs again
    (tmp_path / "m2" / "p" / "DONE").unlink()
    (tmp_path / "m2" / "p" / "fixed").touch()
    text = _call(tmp_path, plan, "m2")
    assert "started" in text and "b 0" in text
    assert (tmp_path / "m2" / "p" / "order").read_text().split() == ["a"]
