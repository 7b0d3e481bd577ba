"""The report's order, and its first section: the answer before the evidence.

:func:`compose` puts the page together: the title, a summary (per model the headline latency,
throughput, energy and memory at the largest context; for serving each sweep's knee, its best
goodput at the gated SLO and the load where the MoE model's advantage vanishes), a table of
contents, the run, serving under load, the single-request tables, plots, harness benchmarks,
definitions, and the footnotes. A section with nothing to show is left out, heading and all.
"""

from __future__ import annotations

import re
import unicodedata

from pytest_moeperf.metrics.formats import DASH, bytes_unit, formatter, sig
from pytest_moeperf.metrics.schema import VIEW_METRICS_BY_KEY, key_header
from pytest_moeperf.report.columns import COL, mem_bytes
from pytest_moeperf.report.failed_cases import failed_text
from pytest_moeperf.report.report_format import table

HEADLINE = ("ttft", "tpot", "decode", "e2e", "j1k")  # columns.COL keys, in the summary's order


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (and GitHub, for these headings) gives a heading."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def contents(lines: list[str]) -> list[str]:
    """A linked list of the ``## `` headings in ``lines``."""
    heads = [line[3:].strip() for line in lines if line.startswith("## ")]
    return ["## Contents", ""] + [f"- [{h}](#{slug(h)})" for h in heads] + [""] if heads else []


def case_summary(report) -> list[str]:
    """Per model at the largest context all models share: TTFT, TPOT, throughputs, energy, peak memory."""
    rows = report.largest()
    if not rows:
        return []
    unit, scale = bytes_unit([mem_bytes(r) for r in rows if not r.failed])
    peak = VIEW_METRICS_BY_KEY["peak_memory_bytes"]
    cols = [COL[k] for k in HEADLINE]
    body = []
    for r in rows:
        if r.failed:
            body.append([r.series, str(r.context)] + [failed_text(r)] * (len(cols) + 1))
            continue
        mem = mem_bytes(r)
        body.append([r.series, str(r.context)] + [c.fmt(c.get(r)) for c in cols]
                    + [DASH if mem is None else formatter(peak.fmt)(mem / scale)])
    kind = "peak RSS" if all(r.v("peak_allocated_bytes") is None for r in rows) else "peak allocated"
    out = ["### Single request, per model", "",
           f"At the largest context all models ran (Table 1); memory is the {kind}. Medians over rounds.", ""]
    return out + table([key_header("model"), key_header("context_tokens")] + [c.header for c in cols]
                       + [peak.head(unit)], body) + [""]


def serving_summary(benches: list[dict], boards: dict | None = None) -> list[str]:
    """Per sweep: the knee and the best goodput at the gated SLO; per MoE x dense pair: where the MoE
    model's output-throughput advantage vanishes."""
    from pytest_moeperf.report import serving_view

    if not benches:
        return []
    groups = serving_view.group(benches)
    knees = [knee for _, _, knee in serving_view.knees(groups)]  # in the order of groups
    body = []
    for ((series, closed), pts), knee in zip(groups.items(), knees):
        good = [x for x in pts if isinstance(x.get("goodput_req_per_s"), (int, float))]
        best = max(good, key=lambda x: x["goodput_req_per_s"], default=None)
        slo = ((pts[0].get("slo") or {}).get("name")) or DASH
        unit = "users" if closed else "requests/s offered"
        best_text = (DASH if best is None else "0: no request met it" if best["goodput_req_per_s"] <= 0
                     else f"{sig(best['goodput_req_per_s'])} requests/s at {best['load_value']:g} {unit}")
        body.append([series, "closed loop (users)" if closed else "open loop (requests/s)", knee,
                     f"{best_text} ({slo})"])
    out = ["### Serving under load", "", "Knee: the sweep.py rule (serving section); goodput: requests/s that met "
           "every limit of the gated SLO, the best load point of each sweep.", ""]
    out += table([key_header(k) for k in ("series", "sweep", "knee", "best_goodput")], body) + [""]
    from pytest_moeperf.serving import crossover

    label = crossover.METRICS[0][1]  # output tokens/s: the crossover section has every metric
    vanish = [r for r in crossover.pair_rows(groups, boards or {}) if r[2] == label]
    for moe, dense, _, _, measured, *_ in vanish:
        out.append(f"- Where the MoE advantage in {label} vanishes, {moe} against {dense}: {measured} "
                   "(the crossover section has TPOT and J/token too).")
    return out + ([""] if vanish else [])


def compose(report, serving: list[dict], harness: list[str] | None = None, device: str | None = None,
            serving_lines: list[str] | None = None, boards: dict | None = None) -> str:
    """The whole page (module docstring). ``report``: a tables.Report or None (serving only);
    ``serving_lines``: the serving section (serving_view.markdown); ``harness``: its section's lines."""
    cases = report.case_sections() if report is not None else []  # first: its footnotes are numbered here
    summary = (case_summary(report) if report is not None else []) + serving_summary(serving, boards)
    title = report.title() if report is not None else "# pytest-moeperf report"
    head = ["## Summary", ""] + ([f"Device: {device}.", ""] if device else []) + summary if summary else []
    body = (report.header() if report is not None else []) + (serving_lines or []) + cases
    if report is not None:
        body += report.plots_section()
    body += (harness or []) + (report.definitions() if report is not None else [])
    lines = [title, ""] + head + contents(head + body) + body
    if report is not None:
        lines += report.footnote_lines()
    return "\n".join(lines).rstrip("\n") + "\n"
