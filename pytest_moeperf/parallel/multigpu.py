"""Several GPUs: one pytest-xdist worker per GPU, and tensor parallelism under torchrun.

1. pytest-xdist (``pytest benchmarks/ -n 4 --dist loadgroup``). This module is a pytest plugin
   (plugin.py loads it through ``pytest_plugins``). The controller finds the GPUs (NVML, else
   ``torch.cuda.device_count()``, or ``--moeperf-gpus 0,1,...``), gives worker ``gwN`` GPU N
   (``CUDA_VISIBLE_DEVICES`` set in the worker before torch touches CUDA, PCI bus order so CUDA's
   index is NVML's) and its own results log ``<results>.gwN.jsonl``. Under xdist pytest-benchmark
   disables itself; the worker then runs the rounds here (``perf_counter`` around each call, the
   same ``Stats`` class pytest-benchmark uses) and hands the fixture a ``Metadata`` object, so the
   plugin logs the case as usual. At the end the controller merges the workers' logs into one
   pytest-benchmark JSON document (``--benchmark-json`` / ``--moeperf-merged-json``) with
   ``extra_info["gpu"]`` (worker, index, uuid, name) per benchmark and every GPU in
   ``machine_info["gpus"]``; the gate and the report read it like any run.

2. Tensor parallelism (``python -m torch.distributed.run --nproc-per-node N -m pytest_moeperf.parallel.multigpu
   --model gpt-oss-120b``): one model sharded over N GPUs with transformers' TP plan; per-GPU
   allocator peaks gathered with ``all_gather_object`` and NVML energy per GPU UUID, summed on
   rank 0 and reported per GPU too. Not yet run on a GPU: see docs/multigpu.md.

Nothing here imports torch, transformers or pynvml at import time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from datetime import datetime, timezone

import pytest

from pytest_moeperf.measure.gpu import normalize_uuid

XDIST_KEY = "_moeperf_xdist"
GROUP_PREFIX = "moeperf-"


# =============================================================================================
# pure parts (unit-tested without pytest-xdist, torch or a GPU)
# =============================================================================================

def parse_gpu_list(raw: str | None) -> list[int] | None:
    """``--moeperf-gpus 0,1,3`` -> [0, 1, 3]; None when not given."""
    if raw is None or str(raw).strip() == "":
        return None
    out = []
    for item in str(raw).split(","):
        item = item.strip()
        if not item.isdigit():
            raise ValueError(f"--moeperf-gpus: {item!r} is not a GPU index; give NVML indices like 0,1,2,3")
        if int(item) in out:
            raise ValueError(f"--moeperf-gpus: GPU {item} is listed twice; one worker per GPU")
        out.append(int(item))
    return out


def select_gpus(nvml_gpus: list[dict] | None, requested: list[int] | None = None,
                visible: str | None = None) -> list[dict]:
    """The GPUs workers get, in order: ``[{"index": NVML index, "uuid": ..., "name": ...}]``.

    ``nvml_gpus``: every GPU NVML lists (None: NVML unavailable); ``requested``: --moeperf-gpus;
    ``visible``: the controller's CUDA_VISIBLE_DEVICES (indices or UUIDs), honoured when nothing
    is requested.
    """
    known = {g["index"]: g for g in (nvml_gpus or [])}
    if requested is not None:
        if nvml_gpus is not None:
            bad = [i for i in requested if i not in known]
            if bad:
                raise ValueError(f"--moeperf-gpus: no GPU {bad[0]}; NVML lists {len(known)} GPU(s) "
                                 f"(indices {', '.join(map(str, sorted(known))) or 'none'})")
        return [dict(known.get(i) or {"index": i, "uuid": None, "name": None}) for i in requested]
    gpus = [dict(g) for g in (nvml_gpus or [])]
    if visible is not None and visible.strip() != "" and gpus:
        by_uuid = {str(g.get("uuid")): g for g in gpus}
        chosen = []
        for tok in (t.strip() for t in visible.split(",")):
            if tok.isdigit() and int(tok) in known:
                chosen.append(dict(known[int(tok)]))
            elif tok.startswith("GPU-"):
                match = next((g for u, g in by_uuid.items() if u.startswith(tok)), None)
                if match is not None:
                    chosen.append(dict(match))
            else:
                break  # CUDA stops at the first invalid entry
        gpus = chosen
    return gpus


def worker_number(worker_id: str) -> int:
    """``"gw3"`` -> 3."""
    m = re.fullmatch(r"gw(\d+)", str(worker_id))
    if not m:
        raise ValueError(f"unexpected xdist worker id {worker_id!r} (expected gwN)")
    return int(m.group(1))


def check_worker_count(workers: int, gpus: list[dict]) -> None:
    """More workers than GPUs would share a GPU: their timings and energy would mix."""
    if gpus and workers > len(gpus):
        listed = ", ".join(str(g["index"]) for g in gpus)
        raise ValueError(f"pytest-xdist: {workers} workers but {len(gpus)} GPU(s) ({listed}); one worker per GPU: "
                         f"use -n {len(gpus)} (or -n auto) or list more GPUs with --moeperf-gpus")


def assign_gpu(worker_id: str, gpus: list[dict], busy: set[int] | frozenset = frozenset()) -> dict | None:
    """Worker gwN gets GPU N; a replacement worker (after a crash) the first GPU no live worker holds.

    Returns None when there are no GPUs (CPU run); raises ValueError when none is free.
    """
    if not gpus:
        return None
    n = worker_number(worker_id)
    if n < len(gpus) and gpus[n]["index"] not in busy:
        return dict(gpus[n])
    free = [g for g in gpus if g["index"] not in busy]
    if not free:
        raise ValueError(f"pytest-xdist worker {worker_id}: every GPU already has a worker")
    return dict(free[0])


def worker_log_path(results_path: str, worker_id: str) -> str:
    """``.moeperf/results.jsonl`` -> ``.moeperf/results.gw0.jsonl``."""
    root, ext = os.path.splitext(results_path)
    return f"{root}.{worker_id}{ext or '.jsonl'}"


def merged_default_path(results_path: str) -> str:
    root, _ = os.path.splitext(results_path)
    return f"{root}.merged.json"


def stats_dict(durations_s: list[float], iterations: int = 1) -> dict:
    """pytest-benchmark's ``stats`` for per-round durations (seconds per iteration), by its own Stats class."""
    from pytest_benchmark.stats import Stats

    s = Stats()
    for d in durations_s:
        s.update(d)
    out = s.as_dict()
    out["data"] = list(s.data)
    out["iterations"] = iterations
    return out


def read_records(path: str, offset: int = 0) -> list[dict]:
    """JSON-lines records of a results log from byte ``offset`` on (records of earlier runs skipped);
    a torn last line is skipped, a missing file is no records."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    from pytest_moeperf.results.results_log import parse_log_lines

    return parse_log_lines(lines, f"{path} (after byte {offset})")


def _gpu_key(g: dict) -> tuple:
    return (g.get("uuid") or "", g.get("index") if g.get("index") is not None else -1, g.get("worker") or "")


def merge_worker_records(worker_records: dict[str, list[dict]], machine_info: dict | None = None,
                         commit_info: dict | None = None) -> dict:
    """One pytest-benchmark document from each worker's results-log records (this run's only).

    Every benchmark keeps its ``extra_info["gpu"]`` (worker, index, uuid, name; added here from the
    worker's session record when missing); ``machine_info["gpus"]`` lists each worker's GPU and
    ``machine_info["gpu"]`` is the first one, so the gate's GPU check works as for one GPU.
    Newest record of a benchmark wins (as results_log.to_benchmark_document).
    """
    benchmarks: dict[str, dict] = {}
    failed: list[dict] = []
    sessions: dict[str, dict] = {}
    gpus: dict[tuple, dict] = {}
    for worker in sorted(worker_records, key=lambda w: (len(w), w)):
        session_gpu = None
        for rec in worker_records[worker]:
            kind = rec.get("type")
            if kind == "session":
                mi = rec.get("machine_info") or {}
                sessions[worker] = mi
                session_gpu = mi.get("gpu") if isinstance(mi.get("gpu"), dict) else None
            elif kind == "case":
                bench = copy.deepcopy(rec["benchmark"])
                extra = bench.setdefault("extra_info", {})
                ident = extra.get("gpu") if isinstance(extra.get("gpu"), dict) else {}
                ident = {"worker": worker, "index": None, "uuid": None, "name": None, **ident}
                if session_gpu:
                    ident["uuid"] = ident["uuid"] or session_gpu.get("uuid")
                    ident["name"] = ident["name"] or session_gpu.get("name")
                extra["gpu"] = ident
                benchmarks.pop(bench["fullname"], None)
                benchmarks[bench["fullname"]] = bench
                full = dict(session_gpu or {})
                full.update({k: v for k, v in ident.items() if v is not None or k not in full})
                gpus.setdefault(_gpu_key(ident), full)
            elif kind == "failed":
                failed.append({"worker": worker, "fullname": rec.get("fullname"), "case": rec.get("case"),
                               "error": rec.get("error")})
    mi = dict(machine_info or {})
    for worker_mi in sessions.values():  # torch/transformers/cuda versions, device: from the workers
        for k, v in worker_mi.items():
            if k != "gpu" and mi.get(k) is None:
                mi[k] = v
    gpu_list = sorted(gpus.values(), key=lambda g: (g.get("index") if g.get("index") is not None else 1 << 30,
                                                    str(g.get("worker"))))
    named = [g for g in gpu_list if g.get("name")]
    mi["gpu"] = dict(named[0]) if named else mi.get("gpu")
    mi["gpus"] = gpu_list
    mi["gpu_names_differ"] = len({g["name"] for g in named}) > 1
    mi["moeperf_xdist_workers"] = sorted(worker_records, key=lambda w: (len(w), w))
    return {"machine_info": mi, "commit_info": commit_info or {}, "benchmarks": list(benchmarks.values()),
            "datetime": datetime.now(timezone.utc).isoformat(), "version": _benchmark_version(),
            "moeperf_failed": failed}


def _benchmark_version() -> str:
    try:
        from importlib.metadata import version

        return version("pytest-benchmark")
    except Exception:
        return "moeperf-xdist-merge"


# =============================================================================================
# the pytest-xdist plugin
# =============================================================================================

def pytest_addoption(parser):
    g = parser.getgroup("moeperf")
    g.addoption("--moeperf-gpus", metavar="INDICES", default=None,
                help="with pytest-xdist: NVML indices of the GPUs, worker gwN gets the N-th (default: every GPU "
                     "CUDA_VISIBLE_DEVICES shows); use -n <count> --dist loadgroup")
    g.addoption("--moeperf-merged-json", metavar="PATH", default=None,
                help="with pytest-xdist: where the workers' cases are merged into one pytest-benchmark JSON "
                     "(default: the --benchmark-json path, else <results>.merged.json)")


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def discover_gpus(config) -> list[dict]:
    """The controller's GPU list; nothing here initialises CUDA in a worker."""
    if str(config.getoption("moeperf_gpu", None) or "auto").lower() == "cpu":
        return []
    requested = parse_gpu_list(config.getoption("moeperf_gpus", None))
    from pytest_moeperf.measure.gpu import list_gpus

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
        from pytest_moeperf.plugin.options import DEFAULT_RESULTS_PATH

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
        from pytest_moeperf.plugin import bench_api

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

        from pytest_moeperf.plugin import bench_api

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


def _controller(config) -> XdistController | None:
    return getattr(config, XDIST_KEY, None)


def pytest_cmdline_main(config):
    """Before pytest_configure (and so before anything can initialise CUDA)."""
    if _is_worker(config):
        wi = config.workerinput
        gpu = wi.get("moeperf_gpu")
        if gpu is not None:
            os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's index = NVML's
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu["index"])
        if wi.get("moeperf_results"):
            config.option.moeperf_results = wi["moeperf_results"]
        return None
    tx = config.getoption("tx", None) or []
    if not (config.getoption("numprocesses", None) or tx) or config.getoption("dist", "no") == "no":
        return None
    try:
        gpus = discover_gpus(config)
        check_worker_count(len(tx), gpus)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    setattr(config, XDIST_KEY, XdistController(config, gpus))
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per GPU (the CPU count where there is no GPU)."""
    try:
        gpus = discover_gpus(config)
    except ValueError:
        return None
    return len(gpus) or None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    ctl = _controller(node.config)
    if ctl is not None:
        ctl.configure_node(node.workerinput)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    ctl = _controller(node.config)
    if ctl is not None:
        ctl.node_down(node.workerinput["workerid"])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Under xdist, one xdist_group per model: --dist loadgroup keeps a model's cases on one worker."""
    if not _is_worker(config):
        return
    for item in items:
        case_id = getattr(item, "callspec", None) and item.callspec.params.get("moeperf_case")
        case = getattr(config, "_moeperf").cases_by_id.get(case_id) if case_id else None
        if case is not None and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(name=f"{GROUP_PREFIX}{case.model}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """In a worker pytest-benchmark is disabled: its pedantic() would call the target once; run the rounds here."""
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if (_is_worker(item.config) and fixture is not None and getattr(fixture, "disabled", False)
            and "moeperf_case" in getattr(getattr(item, "callspec", None), "params", {})):
        fixture.pedantic = lambda target, **kw: worker_pedantic(fixture, item.config, target, **kw)
    return (yield)


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
    gpu = session.gpu()
    if gpu is not None:
        nv = gpu.identity()
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


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Controller: merge the workers' logs into one document, feed the summary and the in-pytest gate."""
    config = session.config
    ctl = _controller(config)
    if ctl is None or not ctl.logs:
        return
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


def pytest_terminal_summary(terminalreporter, config):
    ctl = _controller(config)
    if ctl is None:
        return
    tr = terminalreporter
    if ctl.doc is not None and (ctl.doc["benchmarks"] or ctl.doc["moeperf_failed"]):
        tr.write_sep("-", "moeperf xdist")
        for g in ctl.doc["machine_info"].get("gpus", []):
            tr.write_line(f"{g.get('worker')}: GPU {g.get('index')} {g.get('name') or '(no GPU: cpu)'} {g.get('uuid') or ''}".rstrip())
        tr.write_line(f"{len(ctl.doc['benchmarks'])} cases merged into {', '.join(getattr(ctl, 'written', []))}")
        if config.getoption("dist", "no") != "loadgroup":
            tr.write_line("note: pass --dist loadgroup so each model loads once per worker", yellow=True)
    for note in ctl.notes:
        tr.write_line(f"moeperf xdist: {note}", red=True)


# =============================================================================================
# tensor (dense) and expert (MoE) parallelism under torchrun (ran on 2 x H200: docs/multigpu.md)
# =============================================================================================

def combine_ranks(per_rank: list[dict]) -> dict:
    """Sum per-GPU figures of one TP case (rank 0 reports them); keeps the per-GPU list.

    ``per_rank``: one dict per rank with rank, uuid, name, weights_bytes, peak_allocated_bytes,
    peak_reserved_bytes, energy_j (None where NVML failed), energy_s, energy_unavailable.
    Allocator peaks are per-process peaks and need not coincide in time: their sum is an upper
    bound of the simultaneous total (the figure that must fit the GPUs). Energy is summed only
    when every GPU has it: a partial sum would understate the run.
    """
    ranks = sorted(per_rank, key=lambda r: r["rank"])

    def total(key):
        vals = [r.get(key) for r in ranks]
        return None if any(v is None for v in vals) else sum(vals)

    missing = [f"rank {r['rank']}: {r.get('energy_unavailable') or 'no energy'}" for r in ranks if r.get("energy_j") is None]
    return {
        "tp_size": len(ranks),
        "weights_bytes": total("weights_bytes"),
        "peak_allocated_bytes": total("peak_allocated_bytes"),
        "peak_reserved_bytes": total("peak_reserved_bytes"),
        "energy_total_j": total("energy_j"),
        "energy_unavailable": "; ".join(missing) or None,
        "per_gpu": ranks,
    }


def tp_extra_info(info: dict, combined: dict, measured_rounds: int, tokens: int) -> dict:
    """The rank-0 extra_info: the single-GPU keys replaced by the sums over the TP group."""
    from pytest_moeperf.metrics import derived

    out = dict(info)
    out["tp_size"] = combined["tp_size"]
    out["per_gpu"] = combined["per_gpu"]
    for key in ("weights_bytes", "peak_allocated_bytes", "peak_reserved_bytes"):
        out[key] = combined[key]
    energy = combined["energy_total_j"]
    out["energy_unavailable"] = combined["energy_unavailable"]
    if energy is not None and energy > 0 and measured_rounds and tokens:
        out["energy_j"] = derived.energy_per_round_j(energy, measured_rounds)
        out["tokens_per_j"] = derived.tokens_per_j(tokens, energy)
        out["j_per_1k_tokens"] = derived.j_per_1k_tokens(tokens, energy)
        out["energy_method"] = ("NVML total-energy counter per GPU (by UUID) over all measured rounds, "
                                "summed over the TP group; gross board energy")
    else:
        out["energy_j"] = out["tokens_per_j"] = out["j_per_1k_tokens"] = None
    eff = derived.efficiency(out)  # the group's summed peak memory and energy, as on one GPU
    out["ape_energy"], out["tokens_per_s_per_gb"] = eff["ape_energy"], eff["tokens_per_s_per_gb"]
    samples = dict(out.get("samples") or {})
    samples["energy_j"] = [out["energy_j"]] if out.get("energy_j") is not None else []
    samples["tokens_per_j"] = [out["tokens_per_j"]] if out.get("tokens_per_j") is not None else []
    samples["j_per_1k_tokens"] = [out["j_per_1k_tokens"]] if out.get("j_per_1k_tokens") is not None else []
    out["samples"] = samples
    return out


def tp_benchmark(case, extra_info: dict, durations_s: list[float], tp_size: int) -> dict:
    """One pytest-benchmark entry; the name carries -tpN so it never matches a single-GPU baseline."""
    from pytest_moeperf.model.cases import TEST_NODE

    case_id = f"{case.case_id}-tp{tp_size}"
    return {"group": None, "name": f"test_generate[{case_id}]", "fullname": f"{TEST_NODE}[{case_id}]",
            "params": {"moeperf_case": case_id}, "param": case_id, "extra_info": extra_info,
            "options": {"timer": "time.perf_counter", "moeperf_tp": True}, "stats": stats_dict(durations_s)}


def rank0_document(benchmarks: list[dict], machine_info: dict) -> dict:
    return {"machine_info": machine_info, "commit_info": {}, "benchmarks": benchmarks,
            "datetime": datetime.now(timezone.utc).isoformat(), "version": _benchmark_version()}


def _tp_args(argv):
    p = argparse.ArgumentParser(prog="python -m torch.distributed.run --nproc-per-node N -m pytest_moeperf.parallel.multigpu",
                                description="tensor-parallel deployment benchmark of one model over the GPUs of torchrun")
    p.add_argument("--model", default="gpt-oss-120b", help="preset (default gpt-oss-120b)")
    p.add_argument("--weights", default=None, help="checkpoint path or hub id (default: seeded random weights)")
    p.add_argument("--contexts", default="128,512,1024,2048")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="tp.json", help="pytest-benchmark JSON written by rank 0")
    return p.parse_args(argv)


def _shards_experts(plan) -> bool:
    """Whether a transformers sharding plan (module pattern -> style) splits the MoE experts."""
    return any("experts" in str(pattern).split(".") for pattern in (plan or {}))


def uses_expert_parallel(config) -> bool:
    """True for MoE configs whose experts only the expert-parallel plan splits across the ranks.

    Chosen by what each plan shards, not by which plans exist: GptOss in transformers 5.17 has no
    ``base_model_tp_plan``; in 5.24 its TP plan shards only ``embed_tokens``, so tp_plan="auto"
    alone would replicate the 114 B expert weights of gpt-oss-120b on every GPU. Its
    ``base_model_ep_plan`` splits the experts (grouped_gemm), attention and router replicated.
    """
    return _shards_experts(getattr(config, "base_model_ep_plan", None)) and not _shards_experts(
        getattr(config, "base_model_tp_plan", None))


def distributed_config(config, tp_size: int):
    """transformers' DistributedConfig for ``tp_size`` ranks: the expert-parallel plan for MoE
    configs where it is what splits the experts (uses_expert_parallel), else the TP plan.

    transformers 5.24 takes ``ep_size`` (``enable_expert_parallel`` is deprecated there and its
    ``tp_plan={}`` is refused with ``tp_size > 1``): experts split by the EP plan, the dense modules
    by the TP plan (GptOss: the embedding, row-wise). 5.17 has only ``enable_expert_parallel``:
    experts split, everything else replicated.
    """
    import dataclasses

    from transformers.distributed.configuration_utils import DistributedConfig

    if not uses_expert_parallel(config):
        return DistributedConfig(tp_plan="auto", tp_size=tp_size)
    if "ep_size" in {f.name for f in dataclasses.fields(DistributedConfig)}:
        return DistributedConfig(tp_plan="auto", tp_size=tp_size, ep_size=tp_size)
    return DistributedConfig(tp_plan="auto", tp_size=tp_size, enable_expert_parallel=True)


def load_tp_model(name: str, dtype: str, checkpoint: str | None, tp_size: int, device: str, seed: int = 0):
    """A LoadedModel sharded with transformers' TP plan (from_pretrained + DistributedConfig(tp_plan="auto")).

    from_config takes no TP arguments in transformers 5.17; random weights go through
    from_pretrained(None, config=..., state_dict={}): every weight is missing, so each rank
    initialises its own shard.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_moeperf.model.loading import LoadedModel, torch_dtype
    from pytest_moeperf.model.presets import count_params, get_preset
    from pytest_moeperf.model.tokenizer import get_tokenizer

    preset = get_preset(name)
    dist_cfg = distributed_config(preset.make_config(), tp_size)
    torch.manual_seed(seed)
    before = torch.cuda.memory_allocated() if device == "cuda" else 0
    t0 = time.perf_counter()
    if checkpoint:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype(dtype), distributed_config=dist_cfg)
    else:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        config = preset.make_config()
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # the Auto class refuses a None path
        model = cls.from_pretrained(None, config=config, state_dict={}, dtype=torch_dtype(dtype),
                                    distributed_config=dist_cfg)
    model.eval()
    if device == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    weights = (torch.cuda.memory_allocated() - before) if device == "cuda" else sum(
        (p.to_local() if hasattr(p, "to_local") else p).numel() * p.element_size() for p in model.parameters())
    return LoadedModel(preset=preset, model=model, tokenizer=get_tokenizer(preset.family, preset.vocab_size, checkpoint),
                       device=device, dtype=dtype, weights="checkpoint" if checkpoint else "random",
                       checkpoint=checkpoint, params=count_params(name), weights_bytes=int(weights), load_s=load_s,
                       experts=None)


def main(argv=None) -> int:
    """torchrun entry: every rank runs the same rounds (TP collectives need them in lockstep)."""
    import torch
    import torch.distributed as dist

    from pytest_moeperf.model.cases import Case
    from pytest_moeperf.measure.measure import CaseRunner, MeasureSettings

    args = _tp_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    meter = nv_uuid = nv_name = None
    energy_unavailable = None if device == "cuda" else "no GPU: device is the CPU"
    if device == "cuda":
        from pytest_moeperf.measure.energy import EnergyMeter, NvmlDevice

        props = torch.cuda.get_device_properties(local_rank)
        nv_uuid = f"GPU-{props.uuid}" if getattr(props, "uuid", None) else None
        try:
            gpu = NvmlDevice(uuid=nv_uuid) if nv_uuid else NvmlDevice()
            meter = EnergyMeter(gpu)
            nv_name = gpu.identity().get("name")
        except Exception as exc:
            energy_unavailable = f"{type(exc).__name__}: {exc}"
    loaded = load_tp_model(args.model, args.dtype, args.weights, world, device, args.seed)
    # which of transformers' plans sharded the model: "expert" (MoE experts split across ranks,
    # attention replicated) or "tensor" (the model's base_model_tp_plan)
    plan = "expert" if uses_expert_parallel(loaded.model.config) else "tensor"
    benchmarks = []
    for ctx in [int(c) for c in args.contexts.split(",")]:
        case = Case(args.model, ctx, args.new_tokens, args.dtype)
        runner = CaseRunner(loaded, case, MeasureSettings(rounds=args.rounds, warmup_rounds=0, seed=args.seed),
                            energy_unavailable=energy_unavailable or "summed over GPUs below")
        runner.prime()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        dist.barrier()
        start = meter.begin_window() if meter is not None else None
        durations = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            runner.round()
            durations.append(time.perf_counter() - t0)
        if device == "cuda":
            torch.cuda.synchronize()
        window = meter.end_window(start) if meter is not None else None
        info = runner.extra_info(f"{nv_name or device} x{world} (TP)")
        info["parallel_plan"] = plan
        mine = {"rank": rank, "local_rank": local_rank, "uuid": nv_uuid, "name": nv_name,
                "weights_bytes": loaded.weights_bytes if device == "cuda" else None,
                "peak_allocated_bytes": info.get("peak_allocated_bytes"),
                "peak_reserved_bytes": info.get("peak_reserved_bytes"),
                "energy_j": window.energy_j if window is not None else None,
                "energy_s": window.duration_s if window is not None else None,
                "energy_unavailable": energy_unavailable}
        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
        if rank == 0:
            tokens = sum(r.new_tokens * r.batch_size for r in runner.rounds_done)
            extra = tp_extra_info(info, combine_ranks(gathered), len(runner.rounds_done), tokens)
            benchmarks.append(tp_benchmark(case, extra, durations, world))
            print(f"{benchmarks[-1]['name']}: tpot_ms={extra['tpot_ms']:.3f} peak_allocated_bytes(sum)="
                  f"{extra['peak_allocated_bytes']} energy_j={extra['energy_j']}", flush=True)
    if rank == 0:
        from pytest_moeperf import __version__

        mi = {"moeperf_version": __version__, "torch_version": torch.__version__, "tp_size": world,
              "gpu": {"name": nv_name, "uuid": nv_uuid} if nv_name else None,
              "transformers_version": sys.modules["transformers"].__version__}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rank0_document(benchmarks, mi), fh, indent=2, default=str)
        print(f"wrote {args.json}", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
