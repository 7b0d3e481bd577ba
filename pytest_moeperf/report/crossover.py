"""The report's MoE vs dense section: the per-step model of every serving load point and the crossover
table (computed by serving/step_table.py and serving/crossover.py; their docstrings define every figure).

The board facts (bandwidth, idle power) come from the report's own documents and from
``--bandwidth-from`` files (a run document or a results log whose single-request cases measured
``memory_bandwidth_bytes_per_s`` on the same board, matched by GPU UUID).
"""

from __future__ import annotations

from pytest_moeperf.metrics.schema import VIEW_METRICS_BY_KEY, key_header
from pytest_moeperf.report.report_format import table
from pytest_moeperf.serving import crossover, step_table


def read_any(path: str) -> dict:
    """A run document, or a results log turned into one; ValueError (one line) if neither."""
    from pytest_moeperf.results.documents import DocumentError, looks_like_results_log, read_document
    from pytest_moeperf.results.log_document import to_benchmark_document
    from pytest_moeperf.results.results_log import read_log

    try:
        return read_document(path)
    except DocumentError:
        try:
            with open(path, encoding="utf-8") as fh:
                is_log = looks_like_results_log(fh.read())
        except (OSError, UnicodeDecodeError):
            is_log = False
        if not is_log:
            raise
        return to_benchmark_document(read_log(path))


def boards(paths: list[str], bandwidth_from: list[str] | None = None) -> dict[str, step_table.Board]:
    """The boards' bandwidth and idle power from the report's inputs and the ``--bandwidth-from`` files."""
    docs = []
    for p in list(paths) + list(bandwidth_from or []):
        try:
            docs.append(read_any(p))
        except ValueError:
            if p in (bandwidth_from or []):
                raise
    found = step_table.boards_from_documents(docs)
    for p in bandwidth_from or []:
        if not any(b.bandwidth_bytes_per_s for b in step_table.boards_from_documents([read_any(p)]).values()):
            raise ValueError(f"{p}: no case in it measured memory_bandwidth_bytes_per_s (single-request cases on "
                             "CUDA do); give a run from the same GPU or leave --bandwidth-from out")
    return found


def _table(headers: list[str], rows: list[list]) -> list[str]:
    return table(headers, [[str(c) for c in r] for r in rows])


def section(groups: dict, boards_by_uuid: dict | None = None) -> str:
    """The markdown section (``groups``: report/serving_view.group of the report's load points)."""
    boards_by_uuid = boards_by_uuid or {}
    points = [(s, x) for (s, _), pts in groups.items() for x in pts]
    bytes_rows, floor_rows, notes = step_table.rows(points, boards_by_uuid)
    out = ["## MoE vs dense: the per-step model and the crossover", "",
           "Per decode step, the bytes a model must read (GB, from its config: attention and shared weights, the "
           "distinct experts per MoE layer, the batch's KV cache at the mean decode context, sliding-window layers "
           "capped at their window). Experts per layer: the independence formula E(1−(1−k/E)^B) / the count "
           "measured at that batch. B: the users (closed loop) or the mean requests in flight, at least 1 (Poisson).", ""]
    keys = [key_header(k) for k in ("series", "load_point")]
    out += _table(keys + [key_header(k) for k in ("step_batch", "experts_per_layer")]
                  + [VIEW_METRICS_BY_KEY[k].head("GB") for k in ("step_attention_shared_bytes", "step_experts_bytes",
                                                                 "step_kv_bytes", "step_bytes")],
                  bytes_rows) if bytes_rows else ["No load point of a preset model."]
    out += ["", "A step's floor (its bytes, measured expert count, over the bandwidth) against the measured TPOT p50 "
            "(their ratio: the roofline fraction under load); the energy floor (idle power × floor time, per "
            "sequence: a board draws at least its idle power for at least the floor time) against the measured "
            "J/output token.", ""]
    out += _table(keys + [VIEW_METRICS_BY_KEY[k].header for k in (
        "step_floor_ms", "req_tpot_ms_p50", "roofline_fraction", "energy_floor_j_per_token", "j_per_output_token",
        "energy_floor_fraction")], floor_rows) if floor_rows else []
    out += [""] + [f"- {n}" for n in notes] + [""] if notes else [""]
    out += ["### Where the MoE model's advantage vanishes", "",
            f"MoE / dense at each number of users both ran, with a 95 % percentile-bootstrap interval "
            f"({crossover.N_BOOT} resamples, seed 0): over repeats where a point ran more than once, else over the "
            "point's requests (within-run only: narrower than the spread between runs or machines); J/token has one "
            "energy window per run, so no interval from one run. Measured crossing: interpolated in log load and "
            "log ratio. Per-step model: where the two models' step bytes are equal (experts by the formula). "
            "What moved the ratio: the change of MoE − dense cost per output token (per step for TPOT) from the "
            "lowest load to the first load past the crossing (or the highest load), split into the byte terms' "
            "floors and the overhead above them (compute, launches, scheduling, other requests' prefill chunks "
            "in the same steps), as shares of the whole change.", ""]
    rows = crossover.pair_rows(groups, boards_by_uuid)
    out += _table([key_header(k) for k in ("moe", "dense", "metric", "ratio_by_users", "measured_crossing",
                                           "model_crossing", "what_moved")], rows) if rows else ["No MoE and dense pair of closed-loop sweeps here."]
    return "\n".join(out) + "\n"
