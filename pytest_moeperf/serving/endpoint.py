"""Settings of an OpenAI-compatible endpoint under test, parsed from the --moeperf-endpoint-* options.

Pure (no aiohttp, no torch): every bad value is a ValueError with one line that names the option
and the fix; the plugin turns it into pytest.UsageError.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pytest_moeperf.settings.parsers import parse_int, parse_positive_float

APIS = ("chat", "completions")
# Ways to force the output length past EOS, tried in this order when "auto" (docs/serving.md):
#   ignore_eos        vLLM and SGLang's sampling field (what vLLM's bench serve sends)
#   generation_config transformers serve: a per-request GenerationConfig; eos_token_id -1 disables
#                     EOS in its continuous-batching engine
#   none              max_tokens only; a request that stops early is recorded as short
EOS_FIELDS = ("ignore_eos", "generation_config", "none")

DEFAULTS = {"api": "chat", "timeout_s": 60.0, "ready_timeout_s": 180.0, "connect_timeout_s": 5.0}


@dataclass(frozen=True)
class EndpointConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (no trailing slash)
    model: str
    api: str = DEFAULTS["api"]
    request_timeout_s: float = DEFAULTS["timeout_s"]  # one request, first byte to last
    ready_timeout_s: float = DEFAULTS["ready_timeout_s"]  # readiness probe (load + warm-up)
    connect_timeout_s: float = DEFAULTS["connect_timeout_s"]
    eos_field: str = "auto"  # auto | one of EOS_FIELDS
    energy_gpu: int | None = None  # NVML index of the server's GPU when it is on this machine
    tokenizer: str | None = None  # local tokenizer folder / id to check token counts, when given
    client_workers: int = 1  # client processes per load point (client_workers.py)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"


def check_base_url(url: str) -> str:
    """The endpoint's base URL, normalised; ValueError naming the fix when it is not an http(s) URL."""
    hint = "give the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1"
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"--moeperf-endpoint: {url!r} is not a URL; {hint}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--moeperf-endpoint: {url!r} is not an http(s) URL with a host; {hint}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"--moeperf-endpoint: {url!r} has a query, fragment or credentials; {hint}")
    del port
    return url.strip().rstrip("/")


def _positive(raw, option: str, default: float) -> float:
    value = parse_positive_float(option, raw)  # the suite's one rule for a number
    return default if value is None else value


def add_options(add) -> None:
    """Declare the endpoint's options with ``add`` (pytest's ``group.addoption``); :func:`parse_endpoint` parses them."""
    add("--moeperf-endpoint", metavar="URL", default=None,
        help="benchmark the OpenAI-compatible server at URL (e.g. http://127.0.0.1:8000/v1); requests go only there")
    add("--moeperf-endpoint-model", metavar="NAME", default=None, help="the model name the server expects")
    add("--moeperf-endpoint-api", metavar="API", default=None, help="chat (default) or completions")
    add("--moeperf-endpoint-timeout-s", metavar="S", default=None,
        help="one request's time limit; past it the request is recorded as failed (default 60)")
    add("--moeperf-endpoint-ready-timeout-s", metavar="S", default=None,
        help="how long to wait for the server's first answer (load and warm-up; default 180)")
    add("--moeperf-endpoint-eos-field", metavar="KIND", default=None,
        help="how to force the output length past EOS: auto (default), ignore_eos, generation_config, none")
    add("--moeperf-endpoint-gpu-index", metavar="N", default=None,
        help="NVML index of the server's GPU when it is on this machine: energy is read from it (default: no energy)")
    add("--moeperf-endpoint-tokenizer", metavar="PATH", default=None,
        help="the served model's tokenizer (folder or id) to build exact prompts and check token counts "
             "(default: the model name when it is a local folder)")
    add("--moeperf-client-workers", metavar="N", default=None,
        help="client processes that send each load point to --moeperf-endpoint (default 1; more when a point "
             "is marked 'the client lagged')")


def parse_endpoint(get) -> EndpointConfig | None:
    """``get(name)`` returns the raw option value (pytest's config.getoption) or None.

    None when no --moeperf-endpoint was given (the in-process engine is measured instead)."""
    url = get("moeperf_endpoint")
    if url is None:
        for name in ("endpoint_model", "endpoint_api", "endpoint_timeout_s", "endpoint_gpu_index", "client_workers"):
            if get(f"moeperf_{name}") is not None:
                raise ValueError(f"--moeperf-{name.replace('_', '-')} needs --moeperf-endpoint URL")
        return None
    base_url = check_base_url(url)
    model = get("moeperf_endpoint_model")
    if not model:
        raise ValueError("--moeperf-endpoint needs --moeperf-endpoint-model NAME (the model name the server expects)")
    api = get("moeperf_endpoint_api") or DEFAULTS["api"]
    if api not in APIS:
        raise ValueError(f"--moeperf-endpoint-api: {api!r} is not one of {', '.join(APIS)}")
    eos = get("moeperf_endpoint_eos_field") or "auto"
    if eos not in ("auto",) + EOS_FIELDS:
        raise ValueError(f"--moeperf-endpoint-eos-field: {eos!r} is not one of auto, {', '.join(EOS_FIELDS)}")
    gpu = get("moeperf_endpoint_gpu_index")
    if gpu is not None:
        try:
            gpu = int(gpu)
        except (TypeError, ValueError):
            gpu = -1
        if gpu < 0:
            raise ValueError("--moeperf-endpoint-gpu-index: give the NVML index (0, 1, ...) of the server's GPU on this machine")
    return EndpointConfig(
        base_url=base_url,
        model=str(model),
        api=api,
        request_timeout_s=_positive(get("moeperf_endpoint_timeout_s"), "--moeperf-endpoint-timeout-s", DEFAULTS["timeout_s"]),
        ready_timeout_s=_positive(get("moeperf_endpoint_ready_timeout_s"), "--moeperf-endpoint-ready-timeout-s",
                                  DEFAULTS["ready_timeout_s"]),
        eos_field=eos,
        energy_gpu=gpu,
        tokenizer=get("moeperf_endpoint_tokenizer"),
        client_workers=parse_int("--moeperf-client-workers", get("moeperf_client_workers")) or 1,
    )
