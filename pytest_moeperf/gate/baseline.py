"""Baselines: matching a run's benchmarks to the baseline's, pooling runs, and the GPU identity checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pytest_moeperf.metrics import schema
from pytest_moeperf.gate.config import GateConfig, GpuMismatchError
from pytest_moeperf.gate.statistics import _finite_list
# Reading, keys and the device a document names live in the document store (results/documents.py);
# the gate matches and pools what it reads.
from pytest_moeperf.results.documents import CPU, SOURCE_KEY, bench_key, device_name, gpu_slug, gpu_uuid


# -- GPU identity -----------------------------------------------------------------------

def is_cross_machine(base_docs: Iterable[Mapping[str, Any]], head_doc: Mapping[str, Any] | None) -> bool:
    """True when both sides name their GPU's UUID and the run's GPU is none of the baseline's."""
    head = gpu_uuid(head_doc)
    base = {u for u in (gpu_uuid(d) for d in base_docs) if u}
    return bool(head and base and head not in base)


def bench_cross_machine(base_bench: Mapping[str, Any] | None, head_bench: Mapping[str, Any],
                        doc_level: bool) -> bool:
    """Per benchmark when both carry the GPU they ran on (extra_info.gpu_uuid: a baseline may
    merge cases from several machines), else the documents' answer."""
    b = ((base_bench or {}).get("extra_info") or {}).get("gpu_uuid")
    h = (head_bench.get("extra_info") or {}).get("gpu_uuid")
    return b != h if b and h else doc_level


def device_mismatch(base_docs: Iterable[Mapping[str, Any]], head_doc: Mapping[str, Any]) -> str | None:
    """Why the baseline and the run were measured on different devices (GPU kinds, or a GPU
    against the CPU), or None. A side that names no device is not judged."""
    head_gpu = device_name(head_doc)
    if not head_gpu:
        return None
    for doc in base_docs:
        base_gpu = device_name(doc)
        if base_gpu and base_gpu != head_gpu:
            src = doc.get(SOURCE_KEY)
            return (f"baseline is from {base_gpu}{f' ({src})' if src else ''}, this run is on {head_gpu}; "
                    f"compare against baselines/{gpu_slug(head_gpu.replace(CPU, 'cpu'))} or pass "
                    f"--moeperf-gate-ignore-gpu (python -m pytest_moeperf compare: --ignore-gpu)")
    return None


def check_gpu(base_docs: Iterable[Mapping[str, Any]], head_doc: Mapping[str, Any], config: GateConfig) -> None:
    """Raise GpuMismatchError when baseline and run name different devices (unless ignore_gpu)."""
    if config.ignore_gpu:
        return
    why = device_mismatch(base_docs, head_doc)
    if why:
        raise GpuMismatchError(why)


def index_baseline(base_docs: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Mapping[str, Any], str | None]]:
    """fullname (and name, as a fallback key) -> (benchmark, source file); later documents win."""
    by_full: dict[str, tuple[Mapping[str, Any], str | None]] = {}
    by_name: dict[str, tuple[Mapping[str, Any], str | None]] = {}
    for doc in base_docs:
        for bench in doc.get("benchmarks", []):
            entry = (bench, doc.get(SOURCE_KEY))
            by_full[bench_key(bench)] = entry
            if bench.get("name"):
                by_name[str(bench["name"])] = entry
    return {**{f"name:{k}": v for k, v in by_name.items()}, **by_full}


def baseline_history(base_docs: Sequence[Mapping[str, Any]], head_bench: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every stored run's benchmark matching ``head_bench`` (by fullname, else name), oldest first."""
    return HistoryIndex(base_docs).history(head_bench)


class HistoryIndex:
    """``baseline_history`` for many head benchmarks against the same documents: each document's
    benchmarks indexed once (first position of each fullname and name), so a lookup costs one step
    per document rather than a scan of its benchmarks (100 runs x 100 cases: 10^6 steps a case)."""

    def __init__(self, base_docs: Sequence[Mapping[str, Any]]) -> None:
        self.docs = []
        for doc in base_docs:
            benches = doc.get("benchmarks", [])
            by_key: dict[str, int] = {}
            by_name: dict[str, int] = {}
            for i, bench in enumerate(benches):
                by_key.setdefault(bench_key(bench), i)
                if bench.get("name"):
                    by_name.setdefault(bench.get("name"), i)
            self.docs.append((benches, by_key, by_name))

    def history(self, head_bench: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        key, name = bench_key(head_bench), head_bench.get("name")
        found = []
        for benches, by_key, by_name in self.docs:
            # the first benchmark matching by fullname or by name, as a scan in document order finds it
            hits = [i for i in (by_key.get(key), by_name.get(name) if name else None) if i is not None]
            if hits:
                found.append(benches[min(hits)])
        return found


def find_baseline(index: Mapping[str, tuple[Mapping[str, Any], str | None]], head_bench: Mapping[str, Any]
                  ) -> tuple[Mapping[str, Any] | None, str | None]:
    entry = index.get(bench_key(head_bench))
    if entry is None and head_bench.get("name"):
        entry = index.get(f"name:{head_bench['name']}")
    return entry if entry is not None else (None, None)


def pool_runs(benches: Sequence[Mapping[str, Any]]) -> dict:
    """Several runs of one benchmark as one: the newest run's entry with every metric's
    per-round samples concatenated over the runs (oldest first), and each measured scalar
    (a timing or energy figure without samples, e.g. ``ape_tpot``) the median over the runs.

    Memory stays the newest run's: it is deterministic, and the newest is the code compared.
    A measured scalar from the newest run alone would be one run's drift: on the H200, 8 runs
    a side with a +8.7% TPOT change pooled gave ``ape_tpot`` -12.1% from the two newest runs.
    """
    newest = benches[-1]
    extra = dict(newest.get("extra_info") or {})
    pooled: dict[str, list] = {}
    for b in benches:
        for key, values in ((b.get("extra_info") or {}).get("samples") or {}).items():
            if isinstance(values, list):
                pooled.setdefault(key, []).extend(values)
    extra["samples"] = pooled
    for metric in schema.METRICS:
        if metric.kind == "memory" or (metric.samples and metric.samples in pooled):
            continue  # memory: the newest run's; sampled metrics are compared over the pooled rounds
        values = [(b.get("extra_info") or {}).get(metric.key) for b in benches]
        values = _finite_list([v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)])
        if values:
            extra[metric.key] = float(np.median(values))
    return {**newest, "extra_info": extra}
