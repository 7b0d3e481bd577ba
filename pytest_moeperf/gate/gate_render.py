"""Text and markdown views of a gate result (gate.GateResult). Pure string building."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_moeperf.metrics.formats import format_value
from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, NO_OVERLAP, PASS, SKIPPED, WARN, BenchmarkResult, GateResult, MetricComparison

_HEADERS = ("benchmark", "metric", "baseline", "current", "change %", "p", "detectable %", "threshold %",
            "verdict", "reason")


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _row(bench: str, m: MetricComparison) -> tuple[str, ...]:
    return (bench, f"{m.metric} [{m.unit}]", format_value(m.baseline, m.unit), format_value(m.current, m.unit),
            _pct(m.change_pct, signed=True), _p(m.p_value), _pct(m.mde_pct), _pct(m.threshold_pct), m.verdict,
            m.reason)


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_HEADERS)]
    right = {2, 3, 4, 5, 6, 7}  # numbers align right

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return "\n".join([line(_HEADERS), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _shown(bench: BenchmarkResult, verbose: bool) -> list[MetricComparison]:
    if verbose:
        return list(bench.metrics)
    return [m for m in bench.metrics if m.verdict not in (PASS, SKIPPED)]


def _summary_line(result: GateResult) -> str:
    c = result.counts()
    parts = [f"{c[v]} {v}" for v in (FAIL, INCONCLUSIVE, WARN, PASS) if c.get(v)]
    new = sum(1 for b in result.benchmarks if b.status == "new")
    if new:
        parts.append(f"{new} new (no baseline)")
    skipped = sum(1 for b in result.benchmarks if b.status == "not-compared")
    if skipped:
        parts.append(f"{skipped} not compared")
    if result.missing:
        parts.append(f"{len(result.missing)} missing from this run")
    line = f"moeperf gate: {result.verdict} ({', '.join(parts) or 'no benchmarks'})"
    if result.nothing_compared:
        line += ("\nnothing was compared: no benchmark of this run was measured in the baseline under the same "
                 "name, on the same device, with a metric on both sides; check BASE and HEAD (same suite, same "
                 "cases, same --gpu)")
    return line


def _underpowered_line(result: GateResult) -> str | None:
    """One line naming the PASS/WARN metrics that could not have caught a threshold-sized change."""
    low = result.underpowered()
    if not low:
        return None
    worst_mde = max(m.mde_pct / m.threshold_pct for _, m in low)
    names = sorted({m.metric for _, m in low})
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return (f"low power: {len(low)} PASS/WARN metric(s) could not have caught a change of their threshold "
            f"(detectable effect up to {worst_mde:.1f}x the threshold): {shown}; compare more runs a side "
            f"(compare BASE_DIR --all-runs RUN1 RUN2 ...) to gate them")


LINE_MAX = 120  # a terminal line of the gate's summary; the whole reason is in the JSON and markdown


def _fit(text: str, limit: int = LINE_MAX) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def short_reason(m: MetricComparison) -> str:
    """The figures behind a verdict in a few words (the full sentence is ``m.reason``)."""
    if m.reason.startswith("invalid"):
        return m.reason.split(";")[0]
    change = f"{m.change_pct:+.1f}%" if m.change_pct is not None else "change -"
    bits = [change + (f" vs {m.threshold_pct:g}%" if m.threshold_pct is not None else "")]
    if m.suggested_rounds:  # the fix first: the line may be cut at LINE_MAX
        bits.append(f"{m.suggested_rounds} rounds suggested")
    elif "drift alone" in m.reason:
        bits.append("drift: more runs a side")
    if m.reason.startswith("clock throttling in"):
        bits.append(m.reason.split(";")[0])
    bits.append(f"detectable {m.mde_pct:.1f}%" if m.mde_pct is not None and m.verdict != FAIL else "")
    bits.append(f"p={m.p_value:.2g}" if m.p_value is not None else "")
    return ", ".join(b for b in bits if b)


def _verdict_line(bench: BenchmarkResult, m: MetricComparison) -> str:
    tail = f": {m.metric} {short_reason(m)}"
    room = max(LINE_MAX - len(m.verdict) - 1 - len(tail), 32)  # the name keeps 32 characters at least
    name = bench.name if len(bench.name) <= room else bench.name[:room - 1] + "…"
    return _fit(f"{m.verdict} {name}{tail}")


def _rest_line(result: GateResult) -> str | None:
    """One line counting the metrics that are neither FAIL nor INCONCLUSIVE."""
    rest = [m for b in result.benchmarks for m in b.metrics if m.verdict in (WARN, PASS)]
    if not rest:
        return None
    warns = [m for m in rest if m.verdict == WARN]
    kinds = {"allowlisted": sum(m.reason.startswith("allowlisted") for m in warns),
             "improved (refresh the baseline)": sum("refresh the baseline" in m.reason for m in warns)}
    kinds["worse, under the threshold or not gated"] = len(warns) - sum(kinds.values())
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    warn = f"{len(warns)} WARN ({detail}), " if warns else ""
    return f"other metrics: {warn}{len(rest) - len(warns)} PASS; -v lists every row with its reason"


def _benchmark_lines(result: GateResult, verbose: bool) -> list[str]:
    """New, not compared, throttled and missing benchmarks: by name with -v, else counted."""
    new = [b.name for b in result.benchmarks if b.status == "new"]
    not_compared = [b for b in result.benchmarks if b.status == "not-compared"]
    throttled = [b for b in result.benchmarks if b.throttled_rounds]
    if verbose:
        return ([f"new: {n} (no baseline: PASS)" for n in new]
                + [f"not compared: {b.name}: {b.note}" for b in not_compared]
                + [f"throttled: {b.name}: clock throttling in {b.throttled_rounds} rounds" for b in throttled]
                + [f"missing: {n} (in the baseline, not in this run)" for n in result.missing])
    out = []
    if new:
        out.append(_fit(f"new: {len(new)} benchmark(s) with no baseline (PASS): {', '.join(new)}"))
    if not_compared:
        out.append(_fit(f"not compared: {len(not_compared)} benchmark(s), e.g. {not_compared[0].name}: "
                        f"{not_compared[0].note}"))
    if throttled:
        out.append(_fit(f"throttled: {len(throttled)} benchmark(s) with clock throttling in some rounds"))
    if result.missing:
        out.append(_fit(f"missing: {len(result.missing)} benchmark(s) in the baseline, not in this run: "
                        f"{', '.join(result.missing)}"))
    return out


def render_text(result: GateResult, verbose: bool = False) -> str:
    """The terminal view: the summary, one line of at most LINE_MAX characters per FAIL and
    INCONCLUSIVE metric and one line counting the rest; with verbose, the table of every metric
    with its whole reason (as the JSON and markdown have it) and every benchmark by name."""
    out = [_summary_line(result)]
    sources = result.baseline_sources
    if sources:
        line = f"baseline: {', '.join(sources)}"
        out.append(line if verbose or len(line) <= LINE_MAX
                   else _fit(f"baseline: {len(sources)} runs, the newest {sources[-1]}"))
    if verbose:
        rows = [_row(b.name, m) for b in result.benchmarks for m in b.metrics]
        if rows:
            out.append(_table(rows))
    else:
        out += [_verdict_line(b, m) for b in result.benchmarks for m in b.metrics if m.verdict in (FAIL, INCONCLUSIVE)]
        rest = _rest_line(result)
        if rest:
            out.append(rest)
    out += _benchmark_lines(result, verbose)
    low = _underpowered_line(result)
    if low:
        out.append(low if verbose else f"low power: {len(result.underpowered())} PASS/WARN metric(s) could not have "
                                       f"caught a threshold-sized change; -v names them")
    return "\n".join(out)


def render_benchmark_failure(bench: BenchmarkResult) -> str:
    """The table for one failing benchmark (the longrepr of its failed test)."""
    rows = [_row(bench.name, m) for m in bench.metrics if m.verdict not in (PASS, SKIPPED)]
    head = f"moeperf gate: {bench.verdict} for {bench.fullname}"
    if bench.baseline_source:
        head += f" (baseline {bench.baseline_source})"
    return head + ("\n" + _table(rows) if rows else "")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_ICON = {FAIL: "❌ FAIL", INCONCLUSIVE: "❔ INCONCLUSIVE", WARN: "⚠️ WARN", PASS: "✅ PASS", SKIPPED: "SKIPPED",
         NO_OVERLAP: "⛔ NO-OVERLAP"}


def render_markdown(result: GateResult) -> str:
    """A GitHub table for $GITHUB_STEP_SUMMARY: one row per benchmark, then the metrics not PASS."""
    out = [f"## {_summary_line(result)}", ""]
    if result.baseline_sources:
        out += [f"Baseline: `{'`, `'.join(result.baseline_sources)}`", ""]
    out += ["| benchmark | verdict | metrics not PASS |", "|---|---|---|"]
    for b in result.benchmarks:
        flagged = ", ".join(f"{m.metric} {_pct(m.change_pct, True)}% ({m.verdict})" for m in _shown(b, False))
        note = "new, no baseline" if b.status == "new" else (b.note or "") if b.status == "not-compared" \
            else flagged or "-"
        out.append(f"| `{_md_escape(b.name)}` | {_ICON[b.verdict]} | {_md_escape(note)} |")
    rows = [(b.name, m) for b in result.benchmarks for m in _shown(b, False)]
    if rows:
        out += ["", "| benchmark | metric | baseline | current | change % | p | detectable % | threshold % | "
                    "verdict | reason |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for name, m in rows:
            cells = _row(name, m)
            out.append("| " + " | ".join([f"`{_md_escape(cells[0])}`", *(_md_escape(c) for c in cells[1:8]),
                                          _ICON[m.verdict], _md_escape(m.reason)]) + " |")
    if result.missing:
        out += ["", "Missing from this run: " + ", ".join(f"`{_md_escape(n)}`" for n in result.missing)]
    low = _underpowered_line(result)
    if low:
        out += ["", _md_escape(low)]
    return "\n".join(out) + "\n"
