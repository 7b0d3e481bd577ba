"""Text and markdown views of a gate result (gate.GateResult). Pure string building."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_moeperf.gate.verdicts import FAIL, INCONCLUSIVE, NO_OVERLAP, PASS, SKIPPED, WARN, BenchmarkResult, GateResult, MetricComparison

_HEADERS = ("benchmark", "metric", "baseline", "current", "change %", "p", "detectable %", "threshold %",
            "verdict", "reason")


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":  # bytes read best in binary units
        for scale, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {suffix}"
        return f"{value:.0f} B"
    return f"{value:.4g}"


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


def render_text(result: GateResult, verbose: bool = False) -> str:
    """An aligned table: every metric with verbose, else only those not PASS/SKIPPED."""
    rows = []
    for bench in result.benchmarks:
        for m in _shown(bench, verbose):
            rows.append(_row(bench.name, m))
    out = [_summary_line(result)]
    if result.baseline_sources:
        out.append(f"baseline: {', '.join(result.baseline_sources)}")
    if rows:
        out.append(_table(rows))
    elif result.benchmarks:
        out.append("all compared metrics within thresholds")
    for b in result.benchmarks:
        if b.status == "new":
            out.append(f"new: {b.name} (no baseline: PASS)")
        if b.status == "not-compared":
            out.append(f"not compared: {b.name}: {b.note}")
        if b.throttled_rounds:
            out.append(f"throttled: {b.name}: clock throttling in {b.throttled_rounds} rounds")
    for name in result.missing:
        out.append(f"missing: {name} (in the baseline, not in this run)")
    low = _underpowered_line(result)
    if low:
        out.append(low)
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
