"""Rounds that scatter more than the gate can use: the deployment tables flag them.

The gate (gate/decision.py) decides only where its minimum detectable effect (MDE) is at most the
metric's threshold. Against a run like this one (same rounds, same spread) the MDE of the E2E
rounds is ``statistics.mde_pct(x, x, alpha, power)`` with the gate's default alpha and power; where
it exceeds the E2E threshold (schema.METRICS: e2e_ms_p50), a slowdown just past the threshold is
INCONCLUSIVE rather than FAIL (the gate's condition (c)), and the row says so.
"""

from __future__ import annotations

from pytest_moeperf.metrics.formats import fixed
from pytest_moeperf.metrics.schema import METRICS_BY_KEY

METRIC = "e2e_ms_p50"
MIN_ROUNDS = 3  # under this the spread itself is not known


def too_scattered(values: list[float]) -> tuple[float, float, float] | None:
    """(CV %, MDE %, threshold %) of E2E rounds whose MDE exceeds the gate's threshold, else None."""
    import numpy as np

    from pytest_moeperf.gate.config import GateConfig
    from pytest_moeperf.gate.statistics import mde_pct, spread_pct

    if len(values) < MIN_ROUNDS:
        return None
    arr = np.asarray(values, dtype=float)
    cfg = GateConfig()
    mde = mde_pct(arr, arr, cfg.alpha, cfg.power)
    threshold = METRICS_BY_KEY[METRIC].threshold_pct
    return (float(spread_pct(arr)), float(mde), threshold) if mde > threshold else None


def scatter_note(row) -> str | None:
    """The footnote for a row whose E2E rounds scatter too much for the gate; None otherwise (kept on
    the row: every table asks again)."""
    if "_scatter_note" not in row.__dict__:
        row.__dict__["_scatter_note"] = None if row.failed else _note(row)
    return row.__dict__["_scatter_note"]


def _note(row) -> str | None:
    from pytest_moeperf.report.report_plots import samples_of

    found = too_scattered(samples_of(row, METRIC))
    if found is None:
        return None
    cv, mde, threshold = found
    n = len(samples_of(row, METRIC))
    whole = fixed(0)
    return (f"`{row.case_id}`: its {n} E2E rounds scatter (CV {whole(cv)} %): against a run like it the gate's minimum "
            f"detectable effect is {whole(mde)} %, above its {threshold:g} % threshold, so a slowdown just past the "
            "threshold reads INCONCLUSIVE, not FAIL. More rounds or a quieter machine (docs/gate.md).")
