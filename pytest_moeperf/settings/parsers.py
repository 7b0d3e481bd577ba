"""The suite's option parsers: one per kind of value, shared by every option of every setting
(RunOptions, ServingOptions, the endpoint settings, the gate). Pure, and at the bottom of the
package: it imports nothing of the suite, so any layer may parse its own options with it.

Every bad value becomes a ``ValueError`` with one line that names the option and the fix; the
plugin turns it into ``pytest.UsageError`` (no traceback), a subcommand into ``error: ...``.
"""

from __future__ import annotations

import math


# --- one parser per kind of value, shared by every option (new options reuse them) ---------------
# Every rule holds for every option: None means "not given" (the default applies); an empty or
# blank value, an empty item, a value given twice, or several values where one is expected is
# an error, never a silent default.

def parse_list(name: str, raw) -> list[str] | None:
    """A comma-separated list; None when the option was not given."""
    if raw is None:
        return None
    text = str(raw)
    if not text.strip():
        raise ValueError(f"{name}: empty value; give a value or leave {name} out for its default")
    items = [x.strip() for x in text.split(",")]
    if not all(items):
        raise ValueError(f"{name}: empty item in {text!r}; give a comma-separated list like 'a,b'")
    seen = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{name}: {item!r} is given twice in {text!r}; give each value once "
                             f"(a repeated value would measure the same case twice)")
        seen.add(item)
    return items


def parse_one(name: str, raw) -> str | None:
    """Exactly one value (no comma list); None when not given."""
    items = parse_list(name, raw)
    if items is not None and len(items) != 1:
        raise ValueError(f"{name}: takes one value, got {len(items)} ({str(raw)!r}); give one, e.g. {name} {items[0]}")
    return None if items is None else items[0]


def _int(name: str, item: str, minimum: int, one: bool = False) -> int:
    try:
        v = int(item)
    except ValueError:
        raise ValueError(f"{name}: {item!r} is not a whole number; e.g. {name}={_int_example(item, minimum, one)}") from None
    if v < minimum:
        raise ValueError(f"{name}: {v} is below the minimum of {minimum}")
    return v


def _int_example(item: str, minimum: int, one: bool) -> str:
    """What to type instead: the same number written whole (1e3 -> 1000) where it is one, a
    single value for a one-value option, a list for a list option."""
    try:
        v = float(item)
        if v.is_integer() and v >= minimum:
            return str(int(v))
    except (ValueError, OverflowError):
        pass
    return str(max(minimum, 10)) if one else "128,512"


def parse_ints(name: str, raw, minimum: int = 1) -> list[int] | None:
    """Comma-separated whole numbers >= minimum, each once; None when not given."""
    items = parse_list(name, raw)
    return None if items is None else [_int(name, item, minimum) for item in items]


def parse_positive_ints(name: str, raw) -> list[int] | None:
    return parse_ints(name, raw, minimum=1)


def parse_int(name: str, raw, minimum: int = 1) -> int | None:
    """One whole number >= minimum; None when not given."""
    item = parse_one(name, raw)
    return None if item is None else _int(name, item, minimum, one=True)


def parse_choices(name: str, raw, allowed) -> list[str] | None:
    items = parse_list(name, raw)
    for item in items or ():
        if item not in allowed:
            raise ValueError(f"{name}: unknown value {item!r}; choose from {', '.join(allowed)}")
    return items


def parse_choice(name: str, raw, allowed) -> str | None:
    item = parse_one(name, raw)
    if item is not None and item not in allowed:
        raise ValueError(f"{name}: unknown value {item!r}; choose one of {', '.join(allowed)}")
    return item


def positive_number(name: str, item: str, whole: bool = False) -> float | int:
    """One item as a finite number > 0 (a whole one when ``whole``); the one check every option's numbers take."""
    try:
        v = float(item)
    except ValueError:
        raise ValueError(f"{name}: {item!r} is not a number") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name}: {item} must be > 0 (a finite number)")
    if whole and v != int(v):
        raise ValueError(f"{name}: {item} is not a whole number")
    return int(v) if whole else v


def parse_positive_float(name: str, raw) -> float | None:
    """One finite number > 0; None when not given."""
    item = parse_one(name, raw)
    return None if item is None else positive_number(name, item)


def parse_path(name: str, raw) -> str | None:
    """A file or folder path (one value, commas allowed); None when not given, '' is an error."""
    if raw is None:
        return None
    if not str(raw).strip():
        raise ValueError(f"{name}: empty path; give a path or leave {name} out for its default")
    return str(raw)
