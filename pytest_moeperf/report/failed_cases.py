"""Failed cases as report rows: a document's top-level ``moeperf_failed`` and the short reason a cell shows.

A case that failed (a CUDA OOM at a long context, a compile error) has no benchmark, only an entry
``{"fullname", "case", "error"}`` under ``moeperf_failed`` (log_document.to_benchmark_document).
The report shows it where its numbers would have been, as what it is ("OOM", "failed"), never
as a number and never dropped. Pure functions, no heavy imports.
"""

from __future__ import annotations

import re

from pytest_moeperf.report.row import Row

# the model, context and new tokens every Case.case_id starts with; other axes follow as "-suffix"
_CASE_ID = re.compile(r"^(?P<model>.+?)-c(?P<context>\d+)-n(?P<new>\d+)(?:-(?P<rest>.+))?$")
# failed load points of the serving benchmark belong to its own section (serving_view.py)
_SERVING_TEST = "test_serving"


def parse_case_id(case_id: str) -> tuple[str, int, int, tuple[str, ...]] | None:
    """(model, context, new tokens, suffixes) of a ``Case.case_id``; None if it is not one.

    A failed entry carries only its id, so this is the one place the report reads an id back
    (benchmarks carry their axes in extra_info); tests round-trip Case.case_id through it.
    """
    m = _CASE_ID.match(case_id)
    if m is None:
        return None
    rest = tuple(m.group("rest").split("-")) if m.group("rest") else ()
    return m.group("model"), int(m.group("context")), int(m.group("new")), rest


def failure_label(error, not_run: bool = False) -> str:
    """The short reason a table cell or plot marker shows for a case without numbers."""
    if not_run:
        return "not run"
    text = str(error or "").lower()  # whatever a hand-made document holds
    # torch: "CUDA out of memory. Tried to allocate ..." / "torch.OutOfMemoryError: ..."
    if "out of memory" in text or "outofmemoryerror" in text:
        return "OOM"
    return "failed"


def _test_function(fullname: str) -> str:
    return fullname.split("::")[-1].split("[")[0]


def failed_rows(doc: dict) -> list[Row]:
    """One failed Row per ``moeperf_failed`` entry of a case (not a serving load point).

    Placed by its id at model x context when it parses (a core case when it has no suffix);
    otherwise it is a row with no context, which the report lists under "Other cases".
    """
    entries = doc.get("moeperf_failed")
    rows: list[Row] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        fullname = str(entry.get("fullname") or "")
        if _test_function(fullname) == _SERVING_TEST:
            continue
        case_id = entry.get("case") if isinstance(entry.get("case"), str) and entry["case"] else fullname or "?"
        parsed = parse_case_id(case_id)
        model, context, new, rest = parsed if parsed else (case_id, None, None, ("?",))
        error = entry.get("error")
        ei = {"failed": True, "error": str(error) if error else "failed", "model": model,
              "context_tokens": context, "new_tokens": new}
        rows.append(Row(case_id, model, context, new, {}, rest, ei, {}))
    return rows


def failed_text(row: Row) -> str:
    """A failed row's cell text."""
    return failure_label(row.ei.get("error"), bool(row.ei.get("not_run")))
