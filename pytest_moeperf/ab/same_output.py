"""Did A and B generate the same tokens? Per benchmark, beside the timing verdict (greedy cases).

Each measured run records ``extra_info.output``: a digest of every round's generated ids, the first
sequence's ids and whether all rounds agreed (measure/outputs_check.py). With ``MOEPERF_LOGITS_DIR``
set (the A/B runner sets it per run) a run also saves the first decode step's logits, so where both
sides run the same weights the largest absolute logit difference says how far apart they are even
when the tokens agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_moeperf.ab.paired import benches_by_key
from pytest_moeperf.measure.outputs_check import first_difference


def _output(bench: Mapping[str, Any]) -> Mapping[str, Any] | None:
    out = (bench.get("extra_info") or {}).get("output")
    return out if isinstance(out, Mapping) and isinstance(out.get("digest"), str) else None


def logits_diff(path_a: Path | None, path_b: Path | None) -> float | None:
    """max |logit_A - logit_B| of the first decode step, where both files exist and have the same shape."""
    if path_a is None or path_b is None or not path_a.is_file() or not path_b.is_file():
        return None
    import numpy as np

    a, b = np.load(path_a), np.load(path_b)
    if a.shape != b.shape:
        return None
    d = float(np.max(np.abs(a.astype("float64") - b.astype("float64")))) if a.size else 0.0
    return d if math.isfinite(d) else None


def compare_outputs(runs_a: Sequence[tuple[Mapping[str, Any], Path | None]],
                    runs_b: Sequence[tuple[Mapping[str, Any], Path | None]]) -> list[dict]:
    """runs_*: (document, its logits folder or None) per measured run. One row per benchmark with outputs on both sides."""
    rows = []
    first_a, first_b = (benches_by_key(runs_a[0][0]), benches_by_key(runs_b[0][0])) if runs_a and runs_b else ({}, {})
    for key in sorted(set(first_a) & set(first_b)):
        outs_a = [(o, folder) for doc, folder in runs_a if (o := _output(benches_by_key(doc).get(key, {})))]
        outs_b = [(o, folder) for doc, folder in runs_b if (o := _output(benches_by_key(doc).get(key, {})))]
        if not outs_a or not outs_b:
            continue
        digests_a = {o["digest"] for o, _ in outs_a}
        digests_b = {o["digest"] for o, _ in outs_b}
        (oa, fa), (ob, fb) = outs_a[0], outs_b[0]
        la = _logits_file(oa, fa)
        lb = _logits_file(ob, fb)
        rows.append({
            "bench": key,
            "same_tokens": digests_a == digests_b and len(digests_a) == 1,
            "first_difference": first_difference(oa.get("tokens"), ob.get("tokens")),
            "digests_a": sorted(digests_a), "digests_b": sorted(digests_b),
            "rounds_agree": all(o.get("rounds_agree", True) for o, _ in outs_a + outs_b),
            "logits_max_abs_diff": logits_diff(la, lb),
        })
    return rows


def _logits_file(output: Mapping[str, Any], folder: Path | None) -> Path | None:
    name = output.get("logits_file")
    return Path(folder) / str(name) if folder is not None and isinstance(name, str) and name else None


def output_line(row: Mapping[str, Any]) -> str:
    if row["same_tokens"]:
        what = "same tokens"
    elif row["first_difference"] is not None:
        what = f"DIFFERENT tokens from token {row['first_difference']}"
    else:
        what = "DIFFERENT tokens (rounds of one side disagree)" if not row["rounds_agree"] else "DIFFERENT tokens"
    diff = row.get("logits_max_abs_diff")
    tail = f", first-step logits differ by <= {diff:.3g}" if diff is not None else ""
    return f"outputs      {what}{tail} {row['bench']}"[:120]
