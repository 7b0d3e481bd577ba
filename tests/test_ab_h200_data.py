"""The A/B rule on the H200's own A/B jobs (baselines/h200-runs/2026-12-02c-ab, 2026-12-03-aa; issue 25).

Each job's runs are paired again from their JSON documents and decided by today's rule with the job's own
looks: the verdicts must be the ones the job wrote in its ab.json, and no same-code job may FAIL any metric.
A change to the rule that would have called these real runs differently is caught here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_moeperf.ab import paired
from pytest_moeperf.gate.verdicts import FAIL

RUNS = Path(__file__).resolve().parent.parent / "baselines" / "h200-runs"
JOBS = {  # job folder -> the same code on both sides
    "2026-12-02c-ab/aa": True, "2026-12-02c-ab/aa2": True, "2026-12-03-aa/aa3": True, "2026-12-03-aa/aa4": True,
    "2026-12-03-aa/aa5": True, "2026-12-02c-ab/slow10": False, "2026-12-02c-ab/cache": False,
}


def _pairs(job: Path) -> list[tuple[dict, dict]]:
    """(A document, B document) per pair, in the order the job measured them (warm-up runs left out)."""
    sides: dict[int, dict[str, dict]] = {}
    for run in json.loads((job / "ab.json").read_text())["runs"]:
        if run["pair"] > 0:
            sides.setdefault(run["pair"], {})[run["side"]] = json.loads((job / "runs" / f"{run['name']}.json").read_text())
    return [(sides[p]["A"], sides[p]["B"]) for p in sorted(sides) if set(sides[p]) == {"A", "B"}]


@pytest.mark.parametrize("name", sorted(JOBS))
def test_the_rule_calls_each_real_job_as_it_did(name):
    job = RUNS / name
    written = json.loads((job / "ab.json").read_text())
    pairs = _pairs(job)
    assert len(pairs) == written["pairs"] > 0
    results = paired.decide(pairs, alpha=written["rule"]["alpha"], looks=written["rule"]["looks"])
    if written["pairs"] < written["rule"]["min_pairs"]:  # stopped by its budget before the first look
        assert written["metrics"] == [] and written["stopped"] == "budget", written
    else:
        again = {(r.bench, r.metric): (r.verdict, r.outcome) for r in results}
        assert again == {(m["bench"], m["metric"]): (m["verdict"], m["outcome"]) for m in written["metrics"]}
        assert paired.overall(results) == written["verdict"]
    if JOBS[name]:
        assert all(r.verdict != FAIL for r in results), [r.line() for r in results if r.verdict == FAIL]


def test_five_real_same_code_jobs_ran_on_two_boards():
    boards = set()
    for name, same in JOBS.items():
        if same:
            doc = _pairs(RUNS / name)[0][0]
            boards.add(doc["benchmarks"][0]["extra_info"]["gpu_uuid"])
    assert sum(JOBS.values()) == 5 and len(boards) == 2, boards
