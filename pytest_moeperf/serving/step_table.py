"""The per-step model applied to serving load points: bytes, floor and roofline fraction under load.

For every load point of a preset model (its config gives the shapes; metrics/step_model.py the bytes):
the batch B (closed loop: the users; open loop: the measured mean requests in flight), the distinct
experts per MoE layer by the independence formula beside the count measured at that batch
(``distinct_experts_at_load``), the bytes of each term, the step's floor time at the board's bandwidth
against the measured TPOT p50 (their ratio: the roofline fraction under load), and the energy floor
(idle power x floor time per sequence) against the measured J/output token.

The board's bandwidth and idle power (:func:`boards_from_documents`): a bandwidth measured on the same
board (``memory_bandwidth_bytes_per_s`` of a single-request case whose ``gpu_uuid`` is the point's),
else the datasheet's (:data:`NOMINAL_BANDWIDTH`, named as such); the idle power the session measured
(``machine_info.gpu.idle_power_w``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pytest_moeperf.metrics.step_model import (DTYPE_BYTES, TERMS, StepBytes, energy_floor_j, floor_ms,
                                               mean_decode_context, shape_of, step_bytes)

# datasheet HBM bandwidths, used only where no measurement from the same board was given
NOMINAL_BANDWIDTH = {  # device name substring: (bytes/s, source)
    "H200": (4.8e12, "nominal 4.8 TB/s, NVIDIA H200 datasheet"),
    "H100": (3.35e12, "nominal 3.35 TB/s, NVIDIA H100 SXM datasheet"),
}


@dataclass(frozen=True)
class Board:
    bandwidth_bytes_per_s: float | None = None
    bandwidth_source: str = ""
    idle_power_w: float | None = None


def boards_from_documents(docs: list[dict]) -> dict[str, Board]:
    """{gpu uuid: Board} from run documents: measured bandwidths (the median where several cases
    measured one) and the idle power a session measured."""
    bws: dict[str, list[tuple[float, str]]] = {}
    idle: dict[str, float] = {}
    for doc in docs:
        gpu = (doc.get("machine_info") or {}).get("gpu") or {}
        if gpu.get("uuid") and gpu.get("idle_power_w") is not None:
            idle.setdefault(gpu["uuid"], float(gpu["idle_power_w"]))
        for b in doc.get("benchmarks") or []:
            x = b.get("extra_info") or {}
            uuid = x.get("gpu_uuid") or gpu.get("uuid")
            if uuid and x.get("memory_bandwidth_bytes_per_s"):
                bws.setdefault(uuid, []).append((float(x["memory_bandwidth_bytes_per_s"]), b.get("name", "?")))
    out = {}
    for uuid in set(bws) | set(idle):
        found = sorted(bws.get(uuid, []))
        bw, src = (found[len(found) // 2][0], f"measured on the same board (device-to-device copy, median of "
                   f"{len(found)} case(s), e.g. {found[0][1]})") if found else (None, "")
        out[uuid] = Board(bw, src, idle.get(uuid))
    return out


def board_for(x: dict, boards: dict[str, Board]) -> Board:
    """The point's board; its bandwidth falls back to the datasheet's for the device named."""
    b = boards.get(x.get("gpu_uuid") or "", Board())
    if b.bandwidth_bytes_per_s:
        return b
    name = x.get("device_name") or ""
    nominal = next((v for k, v in NOMINAL_BANDWIDTH.items() if k in name), None)
    return Board(*nominal, b.idle_power_w) if nominal else \
        Board(None, f"{name or 'this device'}: no bandwidth measured or known, so no floors", b.idle_power_w)


@lru_cache(maxsize=None)
def _shape(model: str):
    from pytest_moeperf.model.presets import UnknownModelError, get_preset

    try:
        return shape_of(get_preset(model).make_config())
    except UnknownModelError:
        return None


def batch_of(x: dict) -> float | None:
    """The users of a closed-loop point; an open-loop point's mean requests in flight, at least 1 (a
    step that runs has a sequence in it; below 1 the board idles between requests)."""
    if x.get("load_mode") == "concurrency":
        return float(x["load_value"])
    return max(1.0, float(x["mean_in_flight"])) if x.get("mean_in_flight") else None


def measured_experts(x: dict) -> float | None:
    """The distinct experts per layer measured at the point's batch: only where the routing table
    (``routing_vs_batch``) reached that batch (it is interpolated, never extrapolated)."""
    table, b = x.get("routing_vs_batch") or {}, batch_of(x)
    reached = max((r.get("batch", 0) for r in table.get("by_batch") or []), default=0)
    return x.get("distinct_experts_at_load") if b and reached >= b else None


def point_bytes(x: dict, batch: float | None = None, measured: bool = True) -> StepBytes | None:
    """The step bytes of a load point (or of its model at another ``batch``: the formula's experts)."""
    shape = _shape(x.get("model", ""))
    b = batch_of(x) if batch is None else batch
    if shape is None or not b or x.get("context_tokens") is None:
        return None
    ctx = mean_decode_context(x["context_tokens"], x.get("new_tokens") or 0)
    d = measured_experts(x) if measured and batch is None else None
    return step_bytes(shape, b, ctx, DTYPE_BYTES.get(x.get("dtype") or "bf16", 2), d)


def per_token_terms(x: dict, boards: dict[str, Board], energy: bool = False) -> dict[str, float] | None:
    """The floor of each byte term per output token: ms (or J, ``energy``), at the point's batch."""
    sb, board, b = point_bytes(x), board_for(x, boards), batch_of(x)
    if sb is None or not board.bandwidth_bytes_per_s:
        return None
    out = {}
    for t, v in sb.terms().items():
        ms = floor_ms(v, board.bandwidth_bytes_per_s)
        out[t] = energy_floor_j(ms, board.idle_power_w, b) if energy else ms / b
        if out[t] is None:
            return None
    return out


def rows(points: list[tuple[str, dict]], boards: dict[str, Board]) -> tuple[list[list], list[list], list[str]]:
    """(bytes rows, floor rows, notes) for the (series, extra_info) load points."""
    from pytest_moeperf.metrics.formats import DASH, formatter
    from pytest_moeperf.metrics.schema import VIEW_METRICS_BY_KEY
    from pytest_moeperf.metrics.step_model import expected_distinct_experts

    def f(v, key=None, fmt=".3g"):  # a registry figure in its format (bytes as GB), else ``fmt``
        if key is not None:
            fmt = VIEW_METRICS_BY_KEY[key].fmt
            v = v / 1e9 if v is not None and VIEW_METRICS_BY_KEY[key].unit == "bytes" else v
        return formatter(fmt)(v)

    bytes_rows, floor_rows, notes = [], [], set()
    for series, x in points:
        sb, shape = point_bytes(x), _shape(x.get("model", ""))
        if sb is None:
            notes.add(f"{x.get('model')}: no preset config, so no per-step model")
            continue
        b, board = batch_of(x), board_for(x, boards)
        formula = expected_distinct_experts(shape.n_experts, shape.top_k, b) if shape.n_experts else None
        experts = DASH if not shape.n_experts else f"{f(formula, fmt='.1f')} / {f(measured_experts(x), fmt='.1f')}"
        bytes_rows.append([series, x["load_point"], f(b), experts, f(sb.attention + sb.shared, "step_attention_shared_bytes"),
                           f(sb.experts, "step_experts_bytes"), f(sb.kv, "step_kv_bytes"), f(sb.total, "step_bytes")])
        fl = floor_ms(sb.total, board.bandwidth_bytes_per_s)
        tpot = x.get("req_tpot_ms_p50")
        ej, mj = energy_floor_j(fl, board.idle_power_w, b), x.get("j_per_output_token")
        floor_rows.append([series, x["load_point"], f(fl, "step_floor_ms"), f(tpot, "req_tpot_ms_p50"),
                           f(fl / tpot if fl and tpot else None, "roofline_fraction"), f(ej, "energy_floor_j_per_token"),
                           f(mj, "j_per_output_token"), f(ej / mj if ej and mj else None, "energy_floor_fraction")])
        notes.add(f"{x.get('device_name') or 'device'}: bandwidth {f(board.bandwidth_bytes_per_s / 1e12, fmt='.3f')} TB/s, "
                  f"{board.bandwidth_source}" if board.bandwidth_bytes_per_s else board.bandwidth_source)
        notes.add(f"idle power {board.idle_power_w:.1f} W (measured by the session on {x.get('gpu_uuid')})"
                  if board.idle_power_w is not None else "idle power not measured: no energy floor")
    return bytes_rows, floor_rows, sorted(notes)


TERM_NAMES = {"attention": "attention weights", "shared": "shared weights", "experts": "experts", "kv": "KV cache",
              "overhead": "overhead"}
