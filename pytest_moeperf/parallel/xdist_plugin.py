"""Several GPUs: one pytest-xdist worker per GPU, and tensor parallelism under torchrun.

1. pytest-xdist (``pytest benchmarks/ -n 4 --dist loadgroup``). This module is a pytest plugin
   (plugin.py loads it through ``pytest_plugins``) and holds only its hooks; the controller and the
   worker's rounds live in xdist_run.py, imported only when pytest-xdist runs workers. The controller
   finds the GPUs (NVML, else ``torch.cuda.device_count()``, or ``--moeperf-gpus 0,1,...``), gives
   worker ``gwN`` GPU N (``CUDA_VISIBLE_DEVICES`` set in the worker before torch touches CUDA, PCI bus
   order so CUDA's index is NVML's) and its own results log ``<results>.gwN.jsonl``. Under xdist
   pytest-benchmark disables itself; the worker then runs the rounds (xdist_run.worker_pedantic:
   ``perf_counter`` around each call, the same ``Stats`` class pytest-benchmark uses) and hands the
   fixture a ``Metadata`` object, so the plugin logs the case as usual. At the end the controller
   merges the workers' logs into one pytest-benchmark JSON document (``--benchmark-json`` /
   ``--moeperf-merged-json``) with ``extra_info["gpu"]`` (worker, index, uuid, name) per benchmark and
   every GPU in ``machine_info["gpus"]``; the gate and the report read it like any run.

2. Tensor parallelism (``python -m torch.distributed.run --nproc-per-node N -m pytest_moeperf.parallel.tensor_parallel
   --model gpt-oss-120b``): one model sharded over N GPUs with transformers' TP plan; per-GPU
   allocator peaks gathered with ``all_gather_object`` and NVML energy per GPU UUID, summed on
   rank 0 and reported per GPU too. Not yet run on a GPU: see docs/multigpu.md.

Nothing here imports torch, transformers or pynvml at import time.
"""

from __future__ import annotations

import os

import pytest

XDIST_KEY = "_moeperf_xdist"  # the controller's attribute on the config


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


def _controller(config):  # -> xdist_run.XdistController | None
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
    from pytest_moeperf.parallel.assign import check_worker_count
    from pytest_moeperf.parallel.xdist_run import XdistController, discover_gpus

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
    from pytest_moeperf.parallel.xdist_run import discover_gpus

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
    from pytest_moeperf.parallel.assign import GROUP_PREFIX

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
        from pytest_moeperf.parallel.xdist_run import worker_pedantic

        fixture.pedantic = lambda target, **kw: worker_pedantic(fixture, item.config, target, **kw)
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Controller: merge the workers' logs into one document, feed the summary and the in-pytest gate."""
    ctl = _controller(session.config)
    if ctl is not None and ctl.logs:
        from pytest_moeperf.parallel.xdist_run import finish_session

        finish_session(ctl, session)


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
