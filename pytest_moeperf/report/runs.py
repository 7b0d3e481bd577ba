"""Several runs as one report: the core matrix of one run and the long contexts of another.

Each file is read and checked on its own (one-line errors name the file), then its rows are
merged by case id in file order: a later file's case wins, whether it was measured or failed,
as ``python -m pytest_moeperf merge`` does by fullname. The merged run keeps the first file's
machine and commit info; :func:`runs_table` lists every file with its date, cases and token
clock, so a reader sees which numbers came from which run.
"""

from __future__ import annotations

import math

from pytest_moeperf.metrics.formats import DASH, format_value
from pytest_moeperf.report.report_format import table
from pytest_moeperf.report.row import _num
from pytest_moeperf.report.rows import Results, read_document, results_of



def load_runs(paths: list[str], allow_empty: bool = False, docs: list[dict] | None = None) -> Results:
    """One file: that run. Several: their rows merged by case id, later files winning. ``docs``: the
    files' documents where the caller has read them already."""
    docs = docs if docs is not None else [read_document(p) for p in paths]
    runs = [results_of(str(p), doc, allow_empty=True) for p, doc in zip(paths, docs)]
    if len(runs) == 1:
        return results_of(runs[0].path, runs[0].doc, allow_empty)
    rows: dict[str, object] = {}
    for run in runs:
        for r in run.rows:
            rows.pop(r.case_id, None)  # re-inserted: the later file's place in the order too
            rows[r.case_id] = r
    if not rows and not allow_empty:
        raise ValueError(f"{', '.join(map(str, paths))}: no benchmarks")
    first = runs[0].doc
    doc = {"machine_info": first.get("machine_info") or {}, "commit_info": first.get("commit_info") or {},
           "datetime": "; ".join(dict.fromkeys(str(r.doc.get("datetime") or DASH) for r in runs)),
           "version": "; ".join(dict.fromkeys(str(r.doc.get("version") or DASH) for r in runs)),
           "benchmarks": [b for r in runs for b in r.doc["benchmarks"]]}
    merged = Results(", ".join(r.path for r in runs), doc, list(rows.values()), sources=runs)
    merged.warnings = [w for r in runs for w in r.warnings]
    return merged


def _clock(run: Results) -> str:
    clocks = sorted({str(r.ei["token_clock"]) for r in run.rows if r.ei.get("token_clock")})
    return ", ".join(clocks) or "not recorded"


def runs_table(results: Results) -> list[str]:
    """The runs a merged report was made from, one line each; nothing for a single run."""
    if len(results.sources) < 2:
        return []
    lines = []
    for run in results.sources:
        measured = [r for r in run.rows if not r.failed]
        contexts = sorted({r.context for r in run.rows if r.context is not None})
        lines.append([f"`{run.path}`", str(run.doc.get("datetime") or DASH), str(len(measured)),
                      str(len(run.rows) - len(measured)), ", ".join(map(str, contexts)) or DASH, _clock(run)])
    out = ["### Runs merged into this report", "",
           "Rows are matched by case id; where two files hold the same case the later one wins. Machine and "
           "commit info above are the first file's.", ""]
    return out + table(["File", "Date", "Measured cases", "Failed cases", "Contexts (tokens)", "Token clock"],
                       lines) + [""]


def _gpu_facts(res: Results) -> tuple[str, str]:
    """(GPU, driver) of the Run table: the machine's GPU, else the device the cases name."""
    mi = res.machine
    gpu = mi.get("gpu")
    if isinstance(gpu, dict):
        gpu_text = str(gpu.get("name") or DASH)
        mem = _num(gpu.get("memory_total_bytes"))
        if mem:
            gpu_text += f" ({format_value(mem, 'bytes')})"
        if gpu.get("source"):
            gpu_text += f"; source: {gpu['source']}"
        return gpu_text, str(gpu.get("driver") or DASH)
    if isinstance(gpu, str) and gpu:
        return gpu, DASH
    names = {str(r.ei.get("device_name")) for r in res.rows if r.ei.get("device_name")}
    if names:
        return "none (" + ", ".join(sorted(names)) + ")", DASH
    if mi.get("moeperf_device"):
        return f"none ({mi['moeperf_device']})", DASH
    return DASH, DASH


def _version(mi: dict, name: str) -> str:
    """A package's version in machine_info, at its top level or one table down."""
    for key in (f"{name}_version", name):
        if mi.get(key):
            return str(mi[key])
    for key, val in mi.items():
        if isinstance(val, dict):
            for k2 in (f"{name}_version", name):
                if isinstance(val.get(k2), (str, int, float)):
                    return str(val[k2])
    return DASH


def _commit(ci: dict) -> str:
    if ci.get("id"):
        commit = str(ci["id"])[:12]
        extras = [str(ci["branch"])] if ci.get("branch") else []
        if ci.get("dirty"):
            extras.append("dirty")
        return commit + (" (" + ", ".join(extras) + ")" if extras else "")
    if ci.get("paper"):
        return f"none ({ci['paper']})"
    return DASH


def run_facts(res: Results) -> dict[str, str]:
    """The Run table's rows of one document: GPU, versions, commit, date, cases, rounds, models."""
    mi = res.machine
    gpu_text, driver = _gpu_facts(res)
    rounds = sorted({int(x) for r in res.rows for x in (r.ei.get("rounds"), r.stats.get("rounds"))
                     if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)})
    failed = sum(r.failed for r in res.rows)
    models = list(dict.fromkeys(r.model for r in res.rows))
    return {
        "File": f"`{res.path}`",
        "Source": "paper (transcribed)" if res.is_paper else "pytest-moeperf run",
        "GPU": gpu_text,
        "Driver": driver,
        "CUDA": _version(mi, "cuda"),
        "torch": _version(mi, "torch"),
        "transformers": _version(mi, "transformers"),
        "pytest-moeperf": _version(mi, "moeperf"),
        "Python": str(mi.get("python_version") or DASH),
        "Commit": _commit(res.commit),
        "Date": str(res.doc.get("datetime") or DASH),
        "pytest-benchmark": str(res.doc.get("version") or DASH),
        "Cases": f"{len(res.rows)}" + (f" ({failed} failed)" if failed else ""),
        "Rounds": ", ".join(map(str, rounds)) or DASH,
        "Models": ", ".join(models),
    }
