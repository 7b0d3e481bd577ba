"""Serving options: load points, lengths, engine settings, SLOs. Pure: no torch.

Every bad value is a ValueError with one line naming the option and the fix (the plugin turns it
into a pytest usage error, exit 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pytest_moeperf.results.outputs import DEFAULT_SERVING_RECORDS
from pytest_moeperf.settings.parsers import parse_int, parse_list, parse_positive_float, positive_number

from .load_point import LoadPoint
from .slo import DEFAULT_SLO, MLPERF_SLOS, Slo, parse_slo
from .workload import LengthSpec, parse_length

ARRIVALS = ("poisson", "constant")
SWEEP_MODES = ("stop", "full")
CPU = {"concurrency": (1, 4), "input": 128, "output": 16, "block_size": 32, "num_blocks": 512,
       "max_batch_tokens": 512, "timeout_s": 120.0}
GPU = {"concurrency": (1, 2, 4, 8, 16, 32, 64), "input": 2048, "output": 64, "block_size": None, "num_blocks": None,
       "max_batch_tokens": None, "timeout_s": 600.0}
TEST_NODE = "benchmarks/test_serving.py::test_serving"
# the most requests one load point may build: every request is a prompt and a record held in memory
# (--moeperf-concurrency 1000000000 once built 4e9 of them, 3 GB in 20 s); 64 users take 256
MAX_REQUESTS_PER_POINT = 100_000
MIN_OUTPUT_TOKENS = 2  # TPOT needs a second token: the deployment cases refuse < 2 new tokens too


CUDA_GRAPHS = ("auto", "on", "off")


@dataclass(frozen=True)
class EngineOptions:
    """The engine's own settings (recorded in extra_info). None = transformers decides."""

    block_size: int | None = None  # tokens per KV block ("page_size" since transformers 5.17's rename)
    num_blocks: int | None = None  # KV blocks; None: sized from free device memory
    max_batch_tokens: int | None = None  # tokens per forward step; None: inferred
    cuda_graphs: str = "auto"  # auto | on | off
    compile_level: int = 0  # transformers' default_compile_level: 0 (none) .. 3
    prefix_sharing: bool = False  # prefix caching; off so every request prefills its whole prompt
    max_memory_percent: float | None = None

    def __post_init__(self):
        if self.cuda_graphs not in CUDA_GRAPHS:
            raise ValueError(f"cuda graphs: {self.cuda_graphs!r}; use one of {', '.join(CUDA_GRAPHS)}")
        if not 0 <= self.compile_level <= 3:
            raise ValueError(f"compile level {self.compile_level} must be 0..3")


def _items(raw, option: str) -> list[str]:
    """The suite's one rule for list options (settings/parsers.parse_list): no empty value or item, no
    value twice (it would measure the same load point twice)."""
    return parse_list(option, raw) or []


def _distinct(values: list, option: str) -> list:
    """Numbers that read the same after parsing (4 and 4.0) are one load point given twice."""
    if len(set(values)) != len(values):
        raise ValueError(f"{option}: a load is given twice in {values}; give each value once")
    return values


def _number(item: str, option: str, whole: bool) -> float:
    return positive_number(option, item, whole)


def _int_opt(raw, option: str, default, minimum: int = 1):
    """A whole-number option by the suite's one rule (settings/parsers.parse_int), or its default."""
    v = parse_int(option, raw, minimum)
    return default if v is None else v


@dataclass(frozen=True)
class ServingPoint:
    """One serving benchmark: a model at one load with one engine setting."""

    model: str
    input_len: LengthSpec
    output_len: LengthSpec
    load: LoadPoint
    cuda_graphs: str = "auto"
    dtype: str = "bf16"

    @property
    def point_id(self) -> str:
        parts = [self.model, f"c{self.input_len}".replace(":", "_"), f"n{self.output_len}".replace(":", "_"), self.load.label]
        if self.cuda_graphs != "auto":
            parts.append(f"cg_{self.cuda_graphs}")
        if self.dtype != "bf16":
            parts.append(self.dtype)
        return "-".join(parts)

    @property
    def case_id(self) -> str:
        """The id the plugin's hooks and progress lines show (a Case's case_id, a point's point_id)."""
        return self.point_id

    @property
    def eta_key(self) -> tuple:
        """Points that take about as long (the progress line's time estimate)."""
        return (self.model, "serving", self.dtype, self.cuda_graphs, str(self.input_len), str(self.output_len))

    @property
    def fullname(self) -> str:
        return f"{TEST_NODE}[{self.point_id}]"

    @property
    def family(self) -> tuple:
        """Points of one sweep: same model, lengths and engine; closed and open loop apart."""
        return (self.model, str(self.input_len), str(self.output_len), self.cuda_graphs, self.dtype, self.load.closed_loop)


@dataclass(frozen=True)
class ServingOptions:
    points: tuple[ServingPoint, ...]
    requests: int | None  # per load point; None: the default rule (requests_for)
    warmup_requests: int
    engine: EngineOptions  # cuda_graphs is per point
    slos: tuple[Slo, ...]
    primary_slo: Slo
    sweep: str
    records_path: str
    timeout_s: float
    seed: int
    device: str

    def requests_for(self, load: LoadPoint) -> int:
        """Closed loop: 4 requests per user (>= 8): 4 waves, so the steady-state window (first end to
        last send) spans ~3 end-to-end times, >= 5 s at the GPU's 2048/64 E2E of ~3 s; open loop:
        ~20 s of arrivals on a GPU, ~6 s on the CPU (>= 8). --moeperf-requests overrides."""
        if self.requests is not None:
            return self.requests
        if load.closed_loop:
            return max(8, 4 * int(load.value))
        return max(8, math.ceil(load.value * (20.0 if self.device == "cuda" else 6.0)))

    def engine_for(self, point: ServingPoint) -> EngineOptions:
        from dataclasses import replace

        return replace(self.engine, cuda_graphs=point.cuda_graphs)


def add_options(add) -> None:
    """Declare the serving options with ``add`` (pytest's ``group.addoption``); parse_serving_options parses them."""
    add("--moeperf-concurrency", metavar="USERS", default=None,
        help="serving: closed-loop users per load point, comma-separated (default 1,4 CPU; 1,2,4,...,64 GPU)")
    add("--moeperf-rate", metavar="REQ_PER_S", default=None,
        help="serving: open-loop arrival rates in requests/s, comma-separated (default none)")
    add("--moeperf-arrival", metavar="KIND", default=None, help="serving: poisson (seeded, default) or constant arrivals")
    add("--moeperf-requests", metavar="N", default=None,
        help="serving: requests per load point (default 4 per user, >= 8; open loop ~20 s of arrivals, 6 s on CPU)")
    add("--moeperf-warmup-requests", metavar="N", default=None, help="serving: untimed requests when an engine starts (default 4)")
    add("--moeperf-serving-lengths", metavar="IN/OUT", default=None,
        help="serving: input/output token lengths, each N, uniform:LO-HI or normal:MEAN,STD (default: "
             "--moeperf-contexts/--moeperf-new-tokens if given, else 128/16 CPU, 2048/64 GPU)")
    add("--moeperf-kv-block-size", metavar="TOKENS", default=None, help="serving: KV block size (default 32 CPU, transformers' 256 GPU)")
    add("--moeperf-kv-blocks", metavar="N", default=None, help="serving: KV blocks (default 512 CPU, sized from free memory on GPU)")
    add("--moeperf-max-batch-tokens", metavar="N", default=None, help="serving: tokens per engine step (default 512 CPU, inferred on GPU)")
    add("--moeperf-cuda-graphs", metavar="LIST", default=None, help="serving: auto, on, off, comma-separated: an axis (default auto)")
    add("--moeperf-cb-compile", metavar="LEVEL", default=None, help="serving: transformers' default_compile_level 0-3 (default 0)")
    add("--moeperf-prefix-sharing", action="store_true", default=False, help="serving: allow prefix caching (default off)")
    add("--moeperf-slo", metavar="SLO", action="append", default=[],
        help="serving: an SLO, a MLPerf preset (e.g. mlperf-llama2-70b-interactive) or ttft_ms=…,tpot_ms=…[,e2e_ms=…]; "
             "repeatable, the first is the gated one (default mlperf-llama2-70b-interactive)")
    add("--moeperf-sweep", metavar="MODE", default=None, help="serving: stop (skip loads beyond saturation, default) or full")
    add("--moeperf-point-timeout-s", metavar="S", default=None, help="serving: time limit of one load point (default 120 CPU, 600 GPU)")
    add("--moeperf-serving-records", metavar="PATH", default=None,
        help="serving: per-request records, JSON lines (default .moeperf/serving-records.jsonl)")


def _loads(get, d: dict) -> list[LoadPoint]:
    """The closed-loop users, then the open-loop rates, each sorted (the device's users by default)."""
    conc_raw, rate_raw = get("moeperf_concurrency"), get("moeperf_rate")
    conc = _distinct([_number(x, "--moeperf-concurrency", True) for x in _items(conc_raw, "--moeperf-concurrency")],
                     "--moeperf-concurrency")
    rates = _distinct([_number(x, "--moeperf-rate", False) for x in _items(rate_raw, "--moeperf-rate")], "--moeperf-rate")
    if conc_raw is None and rate_raw is None:
        conc = list(d["concurrency"])
    arrival = (get("moeperf_arrival") or "poisson").strip()
    if arrival not in ARRIVALS:
        raise ValueError(f"--moeperf-arrival: unknown {arrival!r}; use {' or '.join(ARRIVALS)}")
    return [LoadPoint("concurrency", c) for c in sorted(set(conc))] + [LoadPoint(arrival, r) for r in sorted(set(rates))]


def _length_pairs(get, run_options, d: dict, models: tuple[str, ...],
                  endpoint_model: str | None) -> list[tuple[LengthSpec, LengthSpec]]:
    """(input, output) lengths: --moeperf-serving-lengths, else the run's contexts x new tokens, else
    the device's; each within every in-process model's positions."""
    lengths = get("moeperf_serving_lengths")
    if lengths:
        a, sep, b = str(lengths).partition("/")
        if not sep:
            raise ValueError(f"--moeperf-serving-lengths: {lengths!r} must be INPUT/OUTPUT, e.g. uniform:1024-2048/64")
        pairs = [(parse_length(a, "--moeperf-serving-lengths"), parse_length(b, "--moeperf-serving-lengths"))]
    else:
        ins = list(run_options.contexts) if get("moeperf_contexts") else [d["input"]]
        outs = list(run_options.new_tokens) if get("moeperf_new_tokens") else [d["output"]]
        pairs = [(LengthSpec("fixed", i), LengthSpec("fixed", o)) for i in ins for o in outs]
    for model in () if endpoint_model else models:
        from pytest_moeperf.model.presets import get_preset

        limit = get_preset(model).max_positions
        for i, o in pairs:
            if i.max + o.max > limit:
                raise ValueError(f"--moeperf-serving-lengths: {i.max} + {o.max} tokens exceed {model}'s "
                                 f"{limit} positions; use shorter lengths")
    return pairs


def _engine_options(get, d: dict) -> EngineOptions:
    engine = EngineOptions(
        block_size=_int_opt(get("moeperf_kv_block_size"), "--moeperf-kv-block-size", d["block_size"], 4),
        num_blocks=_int_opt(get("moeperf_kv_blocks"), "--moeperf-kv-blocks", d["num_blocks"]),
        max_batch_tokens=_int_opt(get("moeperf_max_batch_tokens"), "--moeperf-max-batch-tokens", d["max_batch_tokens"]),
        compile_level=_int_opt(get("moeperf_cb_compile"), "--moeperf-cb-compile", 0, 0),
        prefix_sharing=bool(get("moeperf_prefix_sharing")))
    if engine.compile_level > 3:
        raise ValueError("--moeperf-cb-compile: use a level from 0 (off) to 3")
    return engine


def parse_serving_options(get, run_options, endpoint_model: str | None = None) -> ServingOptions:
    """``get(name)``: the raw option (pytest's config.getoption); ``run_options``: the suite's RunOptions;
    ``endpoint_model``: the model's label when an OpenAI-compatible server is measured (one model,
    the server's own dtype and engine settings)."""
    d = GPU if run_options.device == "cuda" else CPU
    loads = _loads(get, d)
    models = (endpoint_model,) if endpoint_model else tuple(run_options.models)
    dtypes = ("bf16",) if endpoint_model else tuple(run_options.dtypes)  # bf16: no suffix in the point id
    pairs = _length_pairs(get, run_options, d, models, endpoint_model)
    graphs = _items(get("moeperf_cuda_graphs") or "auto", "--moeperf-cuda-graphs")
    for g in graphs:
        if g not in CUDA_GRAPHS:
            raise ValueError(f"--moeperf-cuda-graphs: unknown {g!r}; use a list of {', '.join(CUDA_GRAPHS)}")
    if endpoint_model:
        graphs = ["auto"]  # the server's own setting
    points = tuple(ServingPoint(m, i, o, load, g, dt) for m in models for dt in dtypes
                   for g in graphs for i, o in pairs for load in loads)
    engine = _engine_options(get, d)
    slos = tuple(parse_slo(s) for s in (get("moeperf_slo") or []))
    primary = slos[0] if slos else MLPERF_SLOS[DEFAULT_SLO]
    sweep = get("moeperf_sweep") or "stop"
    if sweep not in SWEEP_MODES:
        raise ValueError(f"--moeperf-sweep: unknown {sweep!r}; use stop (end a sweep at saturation) or full")
    timeout_s = parse_positive_float("--moeperf-point-timeout-s", get("moeperf_point_timeout_s"))
    timeout_s = d["timeout_s"] if timeout_s is None else timeout_s
    options = ServingOptions(points=points, requests=_int_opt(get("moeperf_requests"), "--moeperf-requests", None),
                          warmup_requests=_int_opt(get("moeperf_warmup_requests"), "--moeperf-warmup-requests", 4, 0),
                          engine=engine, slos=tuple(MLPERF_SLOS.values()) + tuple(s for s in slos if s.name not in MLPERF_SLOS),
                          primary_slo=primary, sweep=sweep,
                          records_path=get("moeperf_serving_records") or DEFAULT_SERVING_RECORDS,
                          timeout_s=timeout_s, seed=run_options.seed, device=run_options.device)
    check_load_bound(options)
    check_drawn_lengths(options)
    return options


def check_load_bound(options: ServingOptions) -> None:
    """No load point builds more than MAX_REQUESTS_PER_POINT requests (one line naming the limit)."""
    limit = MAX_REQUESTS_PER_POINT
    if options.warmup_requests > limit:
        raise ValueError(f"--moeperf-warmup-requests: {options.warmup_requests} is over the limit of {limit} requests "
                         f"(MAX_REQUESTS_PER_POINT in pytest_moeperf/serving/options.py); give fewer")
    for load in {p.load for p in options.points}:
        n = options.requests_for(load)
        if n <= limit:
            continue
        if options.requests is not None:
            raise ValueError(f"--moeperf-requests: {n} requests per load point is over the limit of {limit} "
                             "(MAX_REQUESTS_PER_POINT in pytest_moeperf/serving/options.py, which raises it); give fewer")
        option = "--moeperf-concurrency" if load.closed_loop else "--moeperf-rate"
        value = int(load.value) if float(load.value).is_integer() else load.value
        raise ValueError(f"{option}: {value} plans {n} requests per load point, over the limit of {limit} "
                         f"(MAX_REQUESTS_PER_POINT in pytest_moeperf/serving/options.py, which raises it); give a "
                         f"smaller load or --moeperf-requests N (at most {limit})")


def check_drawn_lengths(options: ServingOptions) -> None:
    """Every output length the seeded workloads draw is >= MIN_OUTPUT_TOKENS (from the draws
    themselves: normal:MEAN,STD is clamped at 1 token); the inputs are checked against the chat
    template at collection (serving/plugin.py), where the tokenizer is at hand."""
    for point in options.points:
        lows = smallest_drawn(options, point)
        if lows[1] < MIN_OUTPUT_TOKENS:
            raise ValueError(f"--moeperf-serving-lengths: output {point.output_len} draws requests of {lows[1]} new "
                             f"token(s); TPOT needs at least {MIN_OUTPUT_TOKENS}, so give outputs of at least "
                             f"{MIN_OUTPUT_TOKENS} (e.g. {point.input_len}/{max(MIN_OUTPUT_TOKENS, point.output_len.a)})")


def smallest_drawn(options: ServingOptions, point: ServingPoint) -> tuple[int, int]:
    """(smallest input, smallest output) in the point's seeded workload (the lengths it will send)."""
    from .workload import WorkloadSpec

    if point.input_len.kind == point.output_len.kind == "fixed":
        return point.input_len.a, point.output_len.a
    spec = WorkloadSpec(options.requests_for(point.load), point.input_len, point.output_len, seed=options.seed)
    drawn = spec.lengths()
    return min(i for i, _ in drawn), min(o for _, o in drawn)
