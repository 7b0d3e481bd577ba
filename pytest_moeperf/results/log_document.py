"""A results log as a pytest-benchmark document, one record at a time: what `python -m pytest_moeperf
results LOG --json OUT` writes, `merge` combines and the report reads from a log. The newest record of
a case wins; the document can be built from records in memory (to_benchmark_document) or written
while the log is read line by line (results_cli.py), one benchmark in memory at a time."""

from __future__ import annotations

import json
from typing import Iterable, Iterator

from pytest_moeperf.results.documents import benchmark_kind
from pytest_moeperf.results.results_log import _now, json_text


def json_chunks(doc: dict, key: str, items: Iterable) -> Iterator[str]:
    """The text json_text gives ``doc`` with ``doc[key]`` = the list of ``items``, piece by piece: one item
    at a time in memory (what `results --json` writes while it reads the log)."""
    import uuid

    marker = f"moeperf-items-{uuid.uuid4().hex}"
    head, tail = json_text({**doc, key: marker}).split(json.dumps(marker), 1)
    yield head
    first = True
    for item in items:
        yield ("[\n    " if first else ",\n    ") + json_text(item).replace("\n", "\n    ")
        first = False
    yield ("[]" if first else "\n  ]") + tail


class SettingsSeen:
    """What mixed_settings_note needs of a log, gathered one record at a time: each kind's fingerprints
    and each fingerprint's settings."""

    def __init__(self) -> None:
        self.by_kind: dict[str, set] = {}
        self.settings: dict[str, dict] = {}

    def add(self, r: dict) -> None:
        if r["type"] == "case":
            self.by_kind.setdefault(benchmark_kind(r["benchmark"]), set()).add(r.get("fingerprint"))
        elif r["type"] == "session" and r.get("fingerprint") and isinstance(r.get("settings"), dict):
            self.settings[r["fingerprint"]] = r["settings"]

    def note(self) -> str | None:
        prints = max(self.by_kind.values(), key=len, default=set())
        if len(prints) <= 1:
            return None
        known = [self.settings[p] for p in prints if p in self.settings]
        diff = ""
        if len(known) >= 2:
            keys = sorted(k for k in set().union(*known) if len({json.dumps(s.get(k), sort_keys=True) for s in known}) > 1)
            diff = f" (they differ in {', '.join(keys)})" if keys else ""
        return (f"the finished cases were logged under {len(prints)} different settings{diff}; the rebuilt run mixes "
                f"them: compare like with like, or rerun the cases under one setting")


def mixed_settings_note(records: list[dict]) -> str | None:
    """A warning when the finished cases of one kind (single-request cases, serving points) were logged
    under more than one set of settings; the two kinds always differ from each other."""
    seen = SettingsSeen()
    for r in records:
        seen.add(r)
    return seen.note()


class DocumentBuilder:
    """to_benchmark_document one record at a time. A case is kept as a handle: its benchmark, or where
    it is in the log (iter_log), loaded again when written, so a log need not be held to rebuild its run."""

    def __init__(self) -> None:
        self.machine_info: dict = {}
        self.by_name: dict[str, tuple] = {}  # fullname -> (handle, the GPU uuid of the session it ran in)
        self.failed: dict[str, dict] = {}

    def add(self, rec: dict, handle=None) -> None:
        if rec.get("type") == "session":
            self.machine_info = rec.get("machine_info") or self.machine_info
        elif rec.get("type") == "case":
            gpu = self.machine_info.get("gpu") if isinstance(self.machine_info.get("gpu"), dict) else None
            # a log can span sessions on several machines: each case keeps the GPU it ran on
            self.by_name[rec["benchmark"]["fullname"]] = (rec["benchmark"] if handle is None else handle,
                                                          gpu.get("uuid") if gpu else None)
        elif rec.get("type") == "failed":
            self.by_name.pop(rec.get("fullname"), None)  # a later failure supersedes an earlier result
            self.failed[rec.get("fullname")] = {"case": rec.get("case"), "error": rec.get("error")}

    def head(self) -> dict:
        """The document with its benchmarks left empty (benchmarks() gives them)."""
        failed = [{"fullname": k, **v} for k, v in self.failed.items() if k not in self.by_name]  # ... and a
        return {"machine_info": self.machine_info, "commit_info": {}, "benchmarks": [],  # later success a failure
                "moeperf_failed": failed, "datetime": _now(), "version": "moeperf-results-log"}

    def benchmarks(self, load=None) -> Iterator[dict]:
        """The newest record of each case, in the log's order; ``load`` turns a handle into its benchmark."""
        for handle, uuid in self.by_name.values():
            bench = handle if load is None else load(handle)
            extra = bench.setdefault("extra_info", {})
            if not extra.get("gpu_uuid") and uuid:
                extra["gpu_uuid"] = uuid
            yield bench


def to_benchmark_document(records: list[dict]) -> dict:
    """A pytest-benchmark-shaped document from a log; the newest record of each case wins."""
    builder = DocumentBuilder()
    for rec in records:
        builder.add(rec)
    doc = builder.head()
    doc["benchmarks"] = list(builder.benchmarks())
    return doc
