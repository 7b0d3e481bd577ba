"""GPUs for pytest-xdist workers (pure: unit-tested without pytest-xdist, torch or a GPU): selection,
assignment, per-worker logs, and the merge of the workers' records into one pytest-benchmark document."""

from __future__ import annotations

import copy
import os
import re
from datetime import datetime, timezone



GROUP_PREFIX = "moeperf-"


def without_xdist_group(fullname):
    """A node id without the ``@GROUP`` that ``--dist loadgroup`` appends to it. pytest-benchmark 5.2
    keeps that suffix in a benchmark's fullname (5.3 does not), and a baseline measured without xdist
    never has it: runs are matched by fullname, so the merged document drops it."""
    if not isinstance(fullname, str):
        return fullname
    head, sep, group = fullname.rpartition("@")
    return head if sep and group.startswith(GROUP_PREFIX) else fullname


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
    Newest record of a benchmark wins (as log_document.to_benchmark_document).
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
                bench["fullname"] = without_xdist_group(bench["fullname"])
                benchmarks.pop(bench["fullname"], None)
                benchmarks[bench["fullname"]] = bench
                full = dict(session_gpu or {})
                full.update({k: v for k, v in ident.items() if v is not None or k not in full})
                gpus.setdefault(_gpu_key(ident), full)
            elif kind == "failed":
                failed.append({"worker": worker, "fullname": without_xdist_group(rec.get("fullname")),
                               "case": rec.get("case"),
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
