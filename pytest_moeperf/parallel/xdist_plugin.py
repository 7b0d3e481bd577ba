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

2. Tensor parallelism (``python -m torch.distributed.run --nproc-per-node N -m pytest_moeperf.parallel.tensor_parallel
   --model gpt-oss-120b``): one model sharded over N GPUs with transformers' TP plan; per-GPU
   allocator peaks gathered with ``all_gather_object`` and NVML energy per GPU UUID, summed on
   rank 0 and reported per GPU too. Not yet run on a GPU: see docs/multigpu.md.

Nothing here imports torch, transformers or pynvml at import time.
"""

from __future__ import annotations

import os
import time

import pytest

from pytest_moeperf.measure.gpu import normalize_uuid
from pytest_moeperf.parallel.assign import GROUP_PREFIX, XDIST_KEY, assign_gpu, check_worker_count, merge_worker_records, merged_default_path, parse_gpu_list, read_records, select_gpus, worker_log_path


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
