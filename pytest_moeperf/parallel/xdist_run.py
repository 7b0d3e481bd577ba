"""pytest-xdist with one worker per GPU: the controller (finds the GPUs, gives each worker its own,
merges the workers' logs) and the worker's rounds. Loaded by parallel/xdist_plugin.py's hooks only
when pytest-xdist runs workers, so a plain pytest session never imports it. Nothing here imports
torch, transformers or pynvml at import time.
"""

from __future__ import annotations

import os
import time

import pytest

from pytest_moeperf.device.gpu import normalize_uuid
from pytest_moeperf.parallel.assign import (assign_gpu, merge_worker_records, merged_default_path,
                                            parse_gpu_list, read_records, select_gpus, worker_log_path)


def discover_gpus(config) -> list[dict]:
    """The controller's GPU list; nothing here initialises CUDA in a worker."""
    if str(config.getoption("moeperf_gpu", None) or "auto").lower() == "cpu":
        return []
    requested = parse_gpu_list(config.getoption("moeperf_gpus", None))
    from pytest_moeperf.device.gpu import list_gpus

    nvml = list_gpus()
    if nvml is None and requested is None:
        try:  # no NVML: torch's count (the controller never runs a case, so initialising CUDA here is harmless)
            import torch

            count = torch.cuda.device_count()
        except Exception:
            count = 0
        return [{"index": i, "uuid": None, "name": None} for i in range(count)]
    return select_gpus(nvml, requested, os.environ.get("CUDA_VISIBLE_DEVICES"))


class XdistController:
    """Controller-side state: the GPUs, which worker holds which, and where each worker logs."""

    def __init__(self, config, gpus: list[dict]):
        self.config = config
        self.gpus = gpus
        self.held: dict[str, int] = {}  # worker id -> NVML index
        self.logs: dict[str, tuple[str, int]] = {}  # worker id -> (log path, byte offset at start)
        from pytest_moeperf.results.outputs import DEFAULT_RESULTS_PATH

        results = config.getoption("moeperf_results", None) or DEFAULT_RESULTS_PATH
        self.results = os.path.abspath(results)
        self.merged_path: str | None = None
        self.doc: dict | None = None
        self.notes: list[str] = []

    def configure_node(self, workerinput: dict) -> None:
        wid = workerinput["workerid"]
        gpu = assign_gpu(wid, self.gpus, set(self.held.values()))
        if gpu is not None:
            self.held[wid] = gpu["index"]
        path = worker_log_path(self.results, wid)
        offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.logs[wid] = (path, offset)
        workerinput["moeperf_gpu"] = gpu
        workerinput["moeperf_results"] = path

    def node_down(self, wid: str) -> None:
        self.held.pop(wid, None)

    def merge(self) -> dict:
        """The workers' cases as one pytest-benchmark document, built by pytest-benchmark's own hooks."""
        from pytest_moeperf.results import bench_api

        records = {wid: read_records(path, offset) for wid, (path, offset) in self.logs.items()}
        machine_info, commit_info = {}, {}
        if hasattr(self.config.hook, "pytest_benchmark_generate_json") and any(
                r.get("type") == "case" for recs in records.values() for r in recs):
            try:
                machine_info = bench_api.machine_info(self.config)
                commit_info = bench_api.commit_info(self.config)
            except Exception as exc:  # machine/commit info is descriptive: never lose the merge for it
                self.notes.append(f"machine/commit info incomplete: {exc}")
        merged = merge_worker_records(records, machine_info, commit_info)
        merged["machine_info"]["moeperf_worker_logs"] = {wid: path for wid, (path, _) in self.logs.items()}
        doc = merged
        if hasattr(self.config.hook, "pytest_benchmark_generate_json"):
            doc = bench_api.document(self.config, merged["benchmarks"], merged["machine_info"], commit_info)
            doc["moeperf_failed"] = merged["moeperf_failed"]
        self.doc = doc
        return doc

    def write(self, doc: dict) -> list[str]:
        """To --moeperf-merged-json and/or --benchmark-json (else <results>.merged.json), and to
        pytest-benchmark's storage with --benchmark-save/--benchmark-autosave."""
        from pytest_benchmark.utils import safe_dumps

        from pytest_moeperf.results import bench_api

        written = []
        text = safe_dumps(doc, ensure_ascii=True, indent=4)
        own = self.config.getoption("moeperf_merged_json", None)
        if own:
            os.makedirs(os.path.dirname(os.path.abspath(own)), exist_ok=True)
            with open(own, "w", encoding="utf-8") as out:
                out.write(text)
            written.append(own)
        path = bench_api.write_json_option(self.config, text)
        if path is not None:
            written.append(path)
        if not written:
            path = merged_default_path(self.results)
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
            written.append(path)
        save = bench_api.save_name(self.config)
        storage = bench_api.benchmark_storage(self.config) if save else None
        if storage is not None and doc["benchmarks"]:
            stored = bench_api.document(self.config, doc["benchmarks"], doc["machine_info"], doc.get("commit_info", {}),
                                        include_data=bool(self.config.getoption("benchmark_save_data", False)))
            storage.save(stored, save)
            written.append(f"{storage} (--benchmark-save)")
        return written


def worker_pedantic(fixture, config, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1,
                    warmup_rounds=0, iterations=1):
    """benchmark.pedantic for a disabled fixture: same rounds, perf_counter timing, pytest-benchmark's Metadata."""
    from pytest_benchmark.stats import Metadata

    if getattr(fixture, "_mode", None):
        raise RuntimeError("the benchmark fixture can only be used once per test")
    fixture._mode = "benchmark.pedantic(...)"
    kwargs = kwargs or {}
    if not isinstance(rounds, int) or rounds < 1 or not isinstance(iterations, int) or iterations < 1:
        raise ValueError("rounds and iterations must be positive ints")
    identity = worker_gpu_identity(config)

    def call():
        a, k = args, kwargs
        if setup is not None:
            got = setup()
            if got:
                a, k = got
        t0 = time.perf_counter()
        for _ in range(iterations):
            result = target(*a, **k)
        dt = time.perf_counter() - t0
        if teardown is not None:
            teardown(*a, **k)
        return dt, result

    for _ in range(warmup_rounds):
        call()
    meta = Metadata(fixture, iterations=iterations, options={
        "disable_gc": False, "timer": "time.perf_counter", "min_rounds": rounds, "max_time": None,
        "min_time": None, "warmup": warmup_rounds, "moeperf_xdist": True})
    result = None
    for _ in range(rounds):
        dt, result = call()
        meta.update(dt)  # Metadata divides by iterations
    fixture.stats = meta  # not added to pytest-benchmark's session: the worker writes no JSON of its own
    fixture.extra_info["gpu"] = identity
    return result


def worker_gpu_identity(config) -> dict:
    """The GPU this worker measures on, cross-checked: torch's device and NVML's board must be the same one."""
    wid = config.workerinput.get("workerid")
    assigned = config.workerinput.get("moeperf_gpu") or {}
    ident = {"worker": wid, "index": assigned.get("index"), "uuid": None, "name": None, "device": "cpu",
             "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    state = getattr(config, "_moeperf", None)
    session = state.session if state is not None else None
    if session is None:
        return ident
    ident["device"] = session.options.device
    nv = session.gpu().identity()  # NoGpu: no name, no uuid
    ident["uuid"], ident["name"] = nv.get("uuid"), nv.get("name")
    if session.options.device == "cuda":
        import torch

        torch_uuid = str(getattr(torch.cuda.get_device_properties(0), "uuid", "") or "")
        ident["name"] = ident["name"] or torch.cuda.get_device_name(0)
        ident["uuid"] = ident["uuid"] or (f"GPU-{torch_uuid}" if torch_uuid else None)
        for what, other in (("torch's cuda:0", torch_uuid), ("the assigned GPU", assigned.get("uuid"))):
            if other and ident["uuid"] and normalize_uuid(other) != normalize_uuid(ident["uuid"]):
                raise RuntimeError(f"worker {wid}: NVML reads {ident['uuid']} but {what} is {other}; "
                                   "energy would come from another board (check CUDA_DEVICE_ORDER)")
    return ident


def finish_session(ctl: XdistController, session) -> None:
    """Merge the workers' logs into one document, feed the plugin's summary and the in-pytest gate."""
    config = session.config
    try:
        doc = ctl.merge()
        if not doc["benchmarks"] and not doc["moeperf_failed"]:
            return
        ctl.written = ctl.write(doc)
    except (OSError, ValueError) as exc:
        ctl.notes.append(f"merge failed: {exc}")
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    state = getattr(config, "_moeperf", None)
    if state is not None:  # the deployment-metrics table of the plugin, on the controller
        state.finished.extend((_CaseRef(_case_id(b)), b.get("extra_info", {})) for b in doc["benchmarks"])
        state.failed.extend((_CaseRef(f.get("case") or f.get("fullname")), f.get("error")) for f in doc["moeperf_failed"])
    _gate_merged(session, doc)


def _gate_merged(session, doc: dict) -> None:
    """The in-pytest gate ran in no worker (benchmarks are off there): compare the merged cases here."""
    gp = session.config.pluginmanager.get_plugin("moeperf-gate")
    if gp is None or getattr(gp, "run", None) is None:
        return
    from pytest_moeperf.gate import config as gate_config
    from pytest_moeperf.gate import verdicts as gate_verdicts

    try:
        gp.run.set_head(doc)
    except gate_config.GpuMismatchError as exc:
        gp.status = f"not compared: {exc}"
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        gp.run = None
        return
    for bench in doc["benchmarks"]:  # the same call as a plain run's, per finished test
        if gp.run.judge(bench).verdict == gate_verdicts.FAIL:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


class _CaseRef:
    def __init__(self, case_id: str):
        self.case_id = case_id


def _case_id(bench: dict) -> str:
    """The case's id as pytest-benchmark stored it (the parametrize id), not parsed from the name."""
    params = bench.get("params") if isinstance(bench.get("params"), dict) else {}
    return str(params.get("moeperf_case") or bench.get("param") or bench.get("name", ""))
