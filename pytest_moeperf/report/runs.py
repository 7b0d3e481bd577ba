"""Several runs as one report: the core matrix of one run and the long contexts of another.

Each file is read and checked on its own (one-line errors name the file), then its rows are
merged by case id in file order: a later file's case wins, whether it was measured or failed,
as ``python -m pytest_moeperf merge`` does by fullname. The merged run keeps the first file's
machine and commit info; :func:`runs_table` lists every file with its date, cases and token
clock, so a reader sees which numbers came from which run.
"""

from __future__ import annotations

from pytest_moeperf.report.report_format import DASH, table
from pytest_moeperf.report.rows import Results, read_document, results_of


def load_runs(paths: list[str], allow_empty: bool = False) -> Results:
    """One file: that run. Several: their rows merged by case id, later files winning."""
    runs = [results_of(str(p), read_document(p), allow_empty=True) for p in paths]
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
