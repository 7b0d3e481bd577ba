"""The report's columns: getters (like with like: a paper baseline's TPOT-based numbers are e2e) and formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pytest_moeperf.metrics import derived
from pytest_moeperf.metrics.formats import bytes_unit, fixed, formatter, pct, sig
from pytest_moeperf.report.report_format import change, table, without_unit
from pytest_moeperf.metrics.schema import VIEW_METRICS_BY_KEY
from pytest_moeperf.report.rows import Row




# --------------------------------------------------------------------------------------------
# formatting


# (numbers in metrics/formats.py, tables in report_format.py; the short names are kept for the code below)
_fmt, _sig, _pct, _change, _table = fixed, sig, pct, change, table


# --------------------------------------------------------------------------------------------
# getters (like with like: a paper baseline's TPOT-based numbers are e2e numbers)


def mem_bytes(r: Row) -> float | None:
    return derived.peak_memory_bytes(r.v("peak_allocated_bytes"), r.v("peak_rss_bytes"))


# A stored figure wins (it was measured with the run's own inputs); an older document without
# it gets the same derived.py formula.

def ape_decode(r: Row) -> float | None:
    if r.is_paper:
        return None  # the paper's APE-TPOT is built on e2e tokens/s
    if r.v("ape_tpot") is not None:
        return r.v("ape_tpot")
    return derived.per_active_billion(r.v("decode_tokens_per_s"), r.v("params_active"))


def ape_e2e(r: Row) -> float | None:
    if r.is_paper:
        return r.v("ape_tpot")
    return derived.ape_e2e(r.v("e2e_tokens_per_s"), r.v("params_active"))


def ape_inv_ttft(r: Row) -> float | None:
    if r.v("ape_inv_ttft") is not None:
        return r.v("ape_inv_ttft")
    return derived.ape_inv_ttft(r.v("ttft_ms"), r.v("params_active"))


def ape_energy(r: Row) -> float | None:
    if r.v("ape_energy") is not None:
        return r.v("ape_energy")
    return derived.per_active_billion(r.v("tokens_per_j"), r.v("params_active"))


def decode_per_gb(r: Row) -> float | None:
    if r.is_paper:
        return None
    if r.v("tokens_per_s_per_gb") is not None:
        return r.v("tokens_per_s_per_gb")
    return derived.per_gb(r.v("decode_tokens_per_s"), mem_bytes(r))


def e2e_per_gb(r: Row) -> float | None:
    if r.is_paper:
        return r.v("tokens_per_s_per_gb")
    return derived.per_gb(r.v("e2e_tokens_per_s"), mem_bytes(r))


def _key(key: str, scale: float = 1.0) -> Callable[[Row], float | None]:
    def get(r: Row):
        x = r.v(key)
        return None if x is None else x * scale
    return get


@dataclass
class Col:
    header: str
    get: Callable[[Row], float | None]
    fmt: Callable[[float | None], str] = _sig
    compare: bool = True
    energy: bool = False
    short: str | None = None
    paper_name: str | None = None  # what the paper calls its figure compared with this one

    @property
    def label(self) -> str:
        return self.short or self.header

    @property
    def name(self) -> str:
        """The label without its unit: baseline and change columns repeat this, the unit stays in the header."""
        return without_unit(self.label)


def metric_col(key: str, get: Callable[[Row], float | None] | None = None, unit: str | None = None,
               scale: float = 1.0, names: dict | None = None, **kw) -> Col:
    """A column of one registry figure (schema.METRICS or REPORT_METRICS): header, unit and format from
    the registry; ``unit``/``scale``: the scale it is shown in (bytes as GB ...); ``names``: the title's
    placeholders ({ref})."""
    m = VIEW_METRICS_BY_KEY[key]
    names = names or {}
    if get is None:
        get = _key(key, scale)
    elif scale != 1.0:
        get = _scaled(get, scale)
    kw.setdefault("energy", m.kind == "energy")
    kw.setdefault("paper_name", m.paper)
    return Col(m.head(unit, **names), get, formatter(m.fmt), short=m.head(unit, short=True, **names) if m.short else None,
               **kw)


def _scaled(get: Callable[[Row], float | None], scale: float) -> Callable[[Row], float | None]:
    def scaled(r: Row):
        x = get(r)
        return None if x is None else x * scale
    return scaled


def bytes_col(key: str, rows: list[Row] | None = None, get: Callable[[Row], float | None] | None = None,
              unit: str | None = None, **kw) -> Col:
    """A registry figure stored in bytes, shown in the decimal unit that fits ``rows``' values (or ``unit``:
    "GB", "MB"), title and format from the registry."""
    m = VIEW_METRICS_BY_KEY[key]
    if m.unit != "bytes":
        raise ValueError(f"{key} is in {m.unit}, not bytes")
    get = get or _key(key)
    if unit is None:
        unit, size = bytes_unit([get(r) for r in rows or []])
    else:
        size = _BYTE_SIZES[unit]
    return metric_col(key, get, unit=unit, scale=1 / size, **kw)


_BYTE_SIZES = {"GB": 1e9, "MB": 1e6, "kB": 1e3, "bytes": 1.0}  # decimal units, as the report says in its header


COL = {
    "ttft": metric_col("ttft_ms"),
    "ttft_p95": metric_col("ttft_ms_p95"),
    "tpot": metric_col("tpot_ms"),
    "itl": metric_col("itl_ms_p50"),
    "e2e_p50": metric_col("e2e_ms_p50"),
    "e2e_p95": metric_col("e2e_ms_p95"),
    "decode": metric_col("decode_tokens_per_s"),
    "e2e": metric_col("e2e_tokens_per_s"),
    "energy": metric_col("energy_j"),
    "tpj": metric_col("tokens_per_j"),
    "j1k": metric_col("j_per_1k_tokens"),
    "peak_gb": bytes_col("peak_allocated_bytes", unit="GB"),
}
