"""How the report lays out markdown tables, and how it splits tables too wide to read (numbers are
printed by metrics/formats.py, the one home of number formats).

A metric table is key columns (Model, Context ...) plus column groups: a metric, and where it is
compared, its baseline and change-% columns right after it (the unit is said once, in the
metric's header). :func:`pack_groups` splits the groups over several tables of at most
``MAX_COLUMNS`` columns each, in order, never splitting a group; key columns repeat in each.
Pure functions, no heavy imports.
"""

from __future__ import annotations

import re
from typing import Sequence

MAX_COLUMNS = 8  # a table wider than this reads badly on a laptop screen and on GitHub


def change(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return (new - old) / abs(old) * 100.0


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


_UNIT = re.compile(r"\s*\([^()]*\)$")


def without_unit(header: str) -> str:
    """'TTFT (ms)' -> 'TTFT': the name a baseline / change column repeats without the unit."""
    return _UNIT.sub("", header) or header


def pack_groups(widths: Sequence[int], key_columns: int, max_columns: int = MAX_COLUMNS) -> list[list[int]]:
    """Indices of column groups per table: in order, each table at most ``max_columns`` wide with its
    key columns (a group wider than that alone gets a table of its own); every group exactly once."""
    parts: list[list[int]] = []
    width = key_columns
    for i, w in enumerate(widths):
        if parts and width + w <= max_columns:
            parts[-1].append(i)
            width += w
        else:
            parts.append([i])
            width = key_columns + w
    return parts


def split_table(key_headers: list[str], key_rows: list[list[str]], groups: list[tuple[list[str], list[list[str]]]],
                names: list[str], max_columns: int = MAX_COLUMNS) -> list[str]:
    """Markdown for one logical table: ``groups`` are (headers, per-row cells) of each column group,
    ``names`` their names for the part captions. One table if it fits, else parts with a caption."""
    parts = pack_groups([len(h) for h, _ in groups], len(key_headers), max_columns)
    out: list[str] = []
    for n, part in enumerate(parts, 1):
        headers = list(key_headers)
        rows = [list(k) for k in key_rows]
        for i in part:
            headers += groups[i][0]
            for row, cells in zip(rows, groups[i][1]):
                row += cells
        if len(parts) > 1:
            out += [f"_Part {n} of {len(parts)}: {', '.join(names[i] for i in part)}._", ""]
        out += table(headers, rows) + [""]
    return out[:-1] if out else out
