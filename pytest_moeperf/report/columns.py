"""The report's columns: getters (like with like: a paper baseline's TPOT-based numbers are e2e) and formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pytest_moeperf.metrics import derived
from pytest_moeperf.report.report_format import change, fmt, pct, sig, table, without_unit
from pytest_moeperf.metrics.schema import METRICS_BY_KEY
from pytest_moeperf.report.rows import Row


GB = 1e9
GiB = 2.0**30


# --------------------------------------------------------------------------------------------
# formatting


# (in report_format.py; the short names are kept for the code below)
_fmt, _sig, _pct, _change, _table = fmt, sig, pct, change, table


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


def metric_col(key: str, get: Callable[[Row], float | None] | None = None, **kw) -> Col:
    """A column of one registry metric: header, unit and format from schema.METRICS."""
    m = METRICS_BY_KEY[key]
    fmt = _sig if m.fmt == "sig" else _fmt(int(m.fmt.strip(".f")))
    return Col(m.header, get or _key(key), fmt, energy=m.kind == "energy", short=m.short, **kw)


_BYTE_UNITS = {"GB": (1e-9, 2), "MB": (1e-6, 1)}  # decimal units, as the report says in its header


def bytes_col(key: str, unit: str = "GB", **kw) -> Col:
    """A registry metric stored in bytes, shown in decimal GB or MB: title from schema.METRICS."""
    m = METRICS_BY_KEY[key]
    if m.unit != "bytes":
        raise ValueError(f"{key} is in {m.unit}, not bytes")
    scale, digits = _BYTE_UNITS[unit]
    return Col(f"{m.title or m.key} ({unit})", _key(key, scale), _fmt(digits), **kw)


COL = {
    "ttft": metric_col("ttft_ms"),
    "ttft_p95": metric_col("ttft_ms_p95"),
    "tpot": metric_col("tpot_ms"),
    "itl": metric_col("itl_ms_p50"),
    "e2e_p50": metric_col("e2e_ms_p50"),
    "e2e_p95": metric_col("e2e_ms_p95"),
    "decode": metric_col("decode_tokens_per_s"),
    "e2e": metric_col("e2e_tokens_per_s", paper_name="TPOT"),
    "energy": metric_col("energy_j"),
    "tpj": metric_col("tokens_per_j"),
    "j1k": metric_col("j_per_1k_tokens"),
    "peak_gb": Col("Peak allocated (GB)", _key("peak_allocated_bytes", 1 / GB), _fmt(2),
                   short="Peak alloc. (GB)"),
}
