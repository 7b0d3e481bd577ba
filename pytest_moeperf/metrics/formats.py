"""How a metric's value is printed, everywhere: the report's tables and summary, the gate's verdicts,
history's trends and the `results` listing. The registry (schema.METRICS) names each metric's format
(``Metric.fmt``: ``".2f"``, ``"sig"`` ...); :func:`formatter` turns it into a function. Bottom of the
package: metrics/ imports nothing above it."""

from __future__ import annotations

from typing import Callable

DASH = "—"  # no value: not measured, not applicable, or not a number


def _finite(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and x == x and x not in (float("inf"), float("-inf"))


def fixed(nd: int) -> Callable[[float | None], str]:
    """``nd`` decimals, thousands separated; a dash for no value."""
    def f(x):
        return f"{x:,.{nd}f}" if _finite(x) else DASH
    return f


def sig(x: float | None) -> str:
    """4 significant digits, thousands separated from 1,000 up; anything but a finite number (None, a
    string or a bool a document holds) is a dash."""
    if not _finite(x):
        return DASH
    if x == 0:
        return "0"
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.1f}"


def pct(x: float | None) -> str:
    """A change in percent, signed, one decimal."""
    return f"{x:+.1f}" if _finite(x) else DASH


def formatter(spec: str) -> Callable[[float | None], str]:
    """A registry format (``Metric.fmt``) as a function: ``"sig"``, ``"pct"``, ``".Nf"`` or ``".Ng"`` (N
    significant digits, no separators)."""
    if spec == "sig":
        return sig
    if spec == "pct":
        return pct
    if spec.startswith(".") and spec[-1:] in ("f", "g") and spec[1:-1].isdigit():
        if spec.endswith("f"):
            return fixed(int(spec[1:-1]))
        return lambda x: format(x, spec) if _finite(x) else DASH
    raise ValueError(f"unknown number format {spec!r}: 'sig', 'pct', '.Nf' or '.Ng'")


def term_cell(value, scale: float, fmt: str) -> str:
    """A terminal summary's cell: ``Metric.term``'s scale and format (``"{:.2f}"``), a dash for no value."""
    return fmt.format(value * scale) if _finite(value) else DASH


def bytes_unit(values) -> tuple[str, float]:
    """The decimal unit that fits the largest of ``values`` (bytes): GB, MB, kB or bytes, and its size,
    so a CPU run's 330 kB model does not print as 0.00 GB."""
    top = max((abs(v) for v in values if v is not None), default=0.0)
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if top >= size:
            return unit, size
    return "bytes", 1.0


def format_value(value: float | None, unit: str) -> str:
    """One value with its unit's scale (bytes in binary units), for the gate's and history's lines."""
    if value is None:
        return "-"
    if unit == "bytes":  # bytes read best in binary units
        for scale, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {suffix}"
        return f"{value:.0f} B"
    return f"{value:.4g}"
