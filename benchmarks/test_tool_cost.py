"""The tool's own cost (issue 29) on synthetic data: what the gate, the plugin and the CLI take
themselves, apart from any model. Figures go to extra_info (time: pytest-benchmark's rounds;
memory: tracemalloc's peak of the allocations made during one call, numpy's buffers included);
docs/gate.md lists what they gave on the development machine. No timing is asserted: a shared
machine's speed is not a property of the code."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

REQUESTS = 10_000  # one serving load point's requests
STORED_RUNS = 10
SAMPLE_KEYS = ("req_ttft_ms", "req_tpot_ms", "req_e2e_ms", "req_queue_wait_ms", "req_decode_tokens_per_s")


def serving_document(rng: np.random.Generator, requests: int, run: int) -> dict:
    """A pytest-benchmark document with one serving load point shaped like benchmarks/test_serving.py's:
    per-request samples of every sampled serving metric, their percentiles, the point's throughputs."""
    samples = {key: rng.lognormal(np.log(20.0 + 10 * i), 0.4, requests).tolist() for i, key in enumerate(SAMPLE_KEYS)}
    extra: dict = {"samples": samples, "samples_kind": "per request", "load_point": "cc64", "backend": "continuous-batching",
                   "model": "tiny-moe", "request_throughput_per_s": 50.0 + rng.normal(), "goodput_req_per_s": 49.0,
                   "output_tokens_per_s": 800.0 + rng.normal(), "slo_attainment": 0.98}
    for key in SAMPLE_KEYS[:4]:
        for q in (50, 90, 99):
            extra[f"{key}_p{q}"] = float(np.percentile(samples[key], q))
    extra["output_tokens_per_s_per_user"] = float(np.median(samples["req_decode_tokens_per_s"]))
    bench = {"name": "test_serving[tiny-moe-c128-n16-cc64]", "group": None, "params": None,
             "fullname": "benchmarks/test_serving.py::test_serving[tiny-moe-c128-n16-cc64]",
             "stats": {"min": 1.0, "max": 1.0, "mean": 1.0, "median": 1.0, "rounds": 1, "data": [1.0]},
             "extra_info": extra}
    return {"machine_info": {"node": "synthetic", "moeperf_device": "cpu"}, "commit_info": {"id": f"{run:040x}"},
            "benchmarks": [bench], "datetime": f"2026-12-01T00:{run:02d}:00", "version": "5.3.1"}


def peak_mb(fn) -> float:
    """Peak of what ``fn()`` allocates (tracemalloc, numpy included), in MB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def serving_storage(tmp_path_factory) -> tuple[Path, dict]:
    """STORED_RUNS runs of a REQUESTS-request serving point in a pytest-benchmark storage folder, and a head run."""
    rng = np.random.default_rng(29)
    folder = tmp_path_factory.mktemp("storage") / "Linux-CPython-3.11-64bit"
    folder.mkdir()
    for run in range(STORED_RUNS):
        doc = serving_document(rng, REQUESTS, run)
        (folder / f"{run + 1:04d}_synthetic.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder.parent, serving_document(rng, REQUESTS, STORED_RUNS)


def test_gate_serving_point(benchmark, serving_storage):
    """Issue 29.1: one 10,000-request serving point gated against 10 stored runs of it, loading included
    (what the plugin does after every serving point). Target: < 2 s and < 200 MB."""
    from pytest_moeperf.gate.config import GateConfig
    from pytest_moeperf.gate.gate_run import GateRun

    storage, head = serving_storage

    def gate():
        run = GateRun.from_path(storage, GateConfig(), all_runs=True)
        run.set_head(head)
        return run.judge(head["benchmarks"][0])

    result = benchmark.pedantic(gate, rounds=3, iterations=1)
    assert result.status == "compared" and len(result.metrics) > 5
    benchmark.extra_info.update(requests=REQUESTS, stored_runs=STORED_RUNS, gate_verdict=result.verdict,
                                gate_peak_mb=peak_mb(gate))


FOREIGN_TESTS = 200  # another project's suite: trivial tests, what the plugin must not slow down
FOREIGN_STORED = 1000  # stored pytest-benchmark runs of that project in ./.benchmarks


@pytest.fixture(scope="module")
def foreign_projects(tmp_path_factory) -> dict[str, Path]:
    """The same foreign suite twice: without stored runs, and with FOREIGN_STORED of them."""
    made = {}
    for stored in (0, FOREIGN_STORED):
        d = tmp_path_factory.mktemp(f"foreign{stored}")
        (d / "test_foreign.py").write_text("".join(f"def test_{i}():\n    assert {i} + 1 > {i}\n\n"
                                                   for i in range(FOREIGN_TESTS)))
        store = d / ".benchmarks" / "Linux-CPython-3.11-64bit"
        store.mkdir(parents=True)
        for run in range(stored):
            doc = {"machine_info": {}, "commit_info": {}, "benchmarks": [
                {"name": f"test_b{k}", "fullname": f"b.py::test_b{k}",
                 "stats": {"min": 1.0, "max": 1.0, "mean": 1.0, "median": 1.0, "rounds": 20, "data": [1.0] * 20},
                 "extra_info": {"samples": {"tpot_ms": [1.0] * 20}}} for k in range(20)]}
            (store / f"{run + 1:04d}_run.json").write_text(json.dumps(doc), encoding="utf-8")
        made[str(stored)] = d
    return made


@pytest.mark.skipif(not os.environ.get("MOEPERF_TOOL_COST"),
                    reason="runs pytest 21 times (minutes on a busy machine): set MOEPERF_TOOL_COST=1")
def test_plugin_on_a_foreign_suite(benchmark, foreign_projects):
    """Issue 29.2: `python -m pytest -q` on another project's 200 trivial tests with the plugin
    installed (entry point) against the same run with -p no:moeperf, and with 1,000 stored runs in
    its .benchmarks against none. Target: < 2 % wall time, no growth with stored runs. The three
    variants run interleaved, round after round, so the machine's load hits them alike; each run's
    CPU time (user + system, from the kernel) is recorded beside its wall time, since on a shared
    machine the wall time carries the other jobs' noise."""
    import resource
    import statistics
    import subprocess
    import sys
    import time

    variants = {"no_plugin": ("0", ("-p", "no:moeperf")), "plugin": ("0", ()),
                "plugin_stored": (str(FOREIGN_STORED), ())}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    env = {**os.environ, "PYTEST_ADDOPTS": ""}

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def one_round():
        for name, (stored, flags) in variants.items():
            t0, c0 = time.perf_counter(), children_cpu()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *flags],
                                  cwd=foreign_projects[stored], capture_output=True, text=True, env=env, timeout=300)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(children_cpu() - c0)
            assert proc.returncode == 0, proc.stdout + proc.stderr

    benchmark.pedantic(one_round, rounds=7, iterations=1)
    # the plugin's own import (what every pytest session with it installed pays before any hook),
    # from python -X importtime: steadier than the wall time of whole runs on a shared machine
    plugin_modules = ("pytest_moeperf.plugin.plugin", "pytest_moeperf.parallel.xdist_plugin", "pytest_moeperf.serving.plugin")
    probe = subprocess.run([sys.executable, "-X", "importtime", "-c", "import pytest, pytest_benchmark.plugin; "
                            + "; ".join(f"import {m}" for m in plugin_modules)],
                           capture_output=True, text=True, env=env, timeout=120)
    # top-level lines only (a nested import's time is inside its parent's cumulative figure)
    import_us = sum(int(line.split("|")[1]) for line in probe.stderr.splitlines()
                    if line.count("|") == 2 and line.split("|")[2][1:] in plugin_modules)
    w = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    benchmark.extra_info.update(
        foreign_tests=FOREIGN_TESTS, stored_runs=FOREIGN_STORED, rounds=7, plugin_import_ms=import_us / 1000.0,
        **{f"{k}_wall_s": v for k, v in w.items()}, **{f"{k}_cpu_s": v for k, v in c.items()},
        plugin_overhead_wall_pct=100.0 * (w["plugin"] / w["no_plugin"] - 1.0),
        plugin_overhead_cpu_pct=100.0 * (c["plugin"] / c["no_plugin"] - 1.0),
        stored_runs_growth_wall_pct=100.0 * (w["plugin_stored"] / w["plugin"] - 1.0),
        stored_runs_growth_cpu_pct=100.0 * (c["plugin_stored"] / c["plugin"] - 1.0))


COMPARE_RUNS, COMPARE_CASES = 100, 100  # issue 29.4: `compare --all-runs` on 100 runs x 100 cases


def deployment_documents(runs: int, cases: int, seed: int = 4) -> list[dict]:
    """``runs`` documents of ``cases`` deployment cases each, shaped like baselines/h200's core matrix:
    its first case's extra_info with every sampled metric's rounds redrawn around their median."""
    root = Path(__file__).resolve().parents[1]
    real = json.loads((root / "baselines" / "h200" / "Linux-CPython-3.12-64bit" / "0002_core-matrix.json")
                      .read_text(encoding="utf-8"))
    template = real["benchmarks"][0]
    rng = np.random.default_rng(seed)
    docs = []
    for run in range(runs):
        benches = []
        for case in range(cases):
            extra = dict(template["extra_info"])
            extra["samples"] = {k: (np.median(v) * rng.lognormal(0.0, 0.03, len(v))).tolist() if k != "throttled" else v
                                for k, v in template["extra_info"]["samples"].items()}
            name = f"test_generate[case{case:03d}]"
            benches.append({**template, "name": name, "fullname": f"benchmarks/test_deployment.py::{name}",
                            "extra_info": extra})
        docs.append({"machine_info": real["machine_info"], "commit_info": {}, "benchmarks": benches,
                     "datetime": f"2026-12-01T{run // 60:02d}:{run % 60:02d}:00", "version": "5.3.1"})
    return docs


@pytest.fixture(scope="module")
def compare_storage(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("compare")
    docs = deployment_documents(COMPARE_RUNS + 1, COMPARE_CASES)
    store = d / "store" / "Linux-CPython-3.12-64bit"
    store.mkdir(parents=True)
    for i, doc in enumerate(docs[:-1]):
        (store / f"{i + 1:04d}_run.json").write_text(json.dumps(doc), encoding="utf-8")
    (d / "head.json").write_text(json.dumps(docs[-1]), encoding="utf-8")
    return store.parent, d / "head.json"


def test_compare_all_runs(benchmark, compare_storage, capsys):
    """Issue 29.4: `python -m pytest_moeperf compare STORE HEAD --all-runs` (in this process, output
    discarded) with 100 stored runs of 100 deployment cases. Target: < 10 s."""
    from pytest_moeperf.__main__ import main

    import time

    store, head = compare_storage
    cpu: list[float] = []

    def run():
        c0 = time.process_time()
        code = main(["compare", str(store), str(head), "--all-runs"])
        cpu.append(time.process_time() - c0)  # beside the wall time: the machine may be shared
        capsys.readouterr()
        return code

    code = benchmark.pedantic(run, rounds=2, iterations=1)
    assert code in (0, 1)
    benchmark.extra_info.update(stored_runs=COMPARE_RUNS, cases=COMPARE_CASES, cpu_s=cpu)


RESULTS_RECORDS = 5_000  # issue 29.5: `results` held ~5.5x the log in memory (~60k records filled 2 GB)

_RESULTS_PROBE = """
import contextlib, json, os, resource, sys, tracemalloc
from pytest_moeperf.__main__ import main
log, small, out = sys.argv[1:4]
args = ["results", log] + (["--json", out] if out != "-" else [])
with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
    main(["results", small])  # imports done before the count starts
    tracemalloc.start()
    code = main(args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
print(json.dumps({"code": code, "peak_bytes": peak, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.fixture(scope="module")
def results_log_file(tmp_path_factory) -> tuple[Path, Path]:
    """A results log of RESULTS_RECORDS case records (the H200 core matrix's first case, rounds redrawn,
    one distinct case each), with a session record first; and a one-record log for the warm-up."""
    d = tmp_path_factory.mktemp("results")
    docs = deployment_documents(1, 50)
    cases = docs[0]["benchmarks"]
    session = {"type": "session", "datetime": "2026-12-01T00:00:00", "fingerprint": "f1",
               "machine_info": docs[0]["machine_info"]}
    with open(d / "r.jsonl", "w", encoding="utf-8") as fh:
        fh.write(json.dumps(session) + "\n")
        for i in range(RESULTS_RECORDS):
            name = f"test_generate[case{i:05d}]"
            bench = {**cases[i % len(cases)], "name": name, "fullname": f"benchmarks/test_deployment.py::{name}",
                     "param": f"case{i:05d}"}
            fh.write(json.dumps({"type": "case", "datetime": "2026-12-01T00:00:01", "fingerprint": "f1",
                                 "benchmark": bench}) + "\n")
    (d / "one.jsonl").write_text(json.dumps(session) + "\n", encoding="utf-8")
    return d / "r.jsonl", d / "one.jsonl"


@pytest.mark.parametrize("to_json", [False, True], ids=["list", "json"])
def test_results_memory(benchmark, results_log_file, tmp_path, to_json):
    """Issue 29.5: `python -m pytest_moeperf results LOG` (and with `--json OUT`) on a log of 5,000 case
    records, in a fresh process: the peak of what the command allocates (tracemalloc, imports excluded)
    against the log's size, and the process's max RSS. Target: <= 2x the log."""
    import subprocess
    import sys

    log, small = results_log_file
    out = tmp_path / "run.json" if to_json else "-"
    figures = {}

    def probe():
        proc = subprocess.run([sys.executable, "-c", _RESULTS_PROBE, str(log), str(small), str(out)],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        figures.update(json.loads(proc.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(probe, rounds=1, iterations=1)
    assert figures["code"] == 0
    size = log.stat().st_size
    benchmark.extra_info.update(records=RESULTS_RECORDS, log_mb=size / 1e6, peak_mb=figures["peak_bytes"] / 1e6,
                                peak_over_log=figures["peak_bytes"] / size, maxrss_mb=figures["maxrss_kb"] / 1e3)
