"""HTTP answers of an OpenAI-compatible server, read bounded and turned into one line each: an error
answer's own message, a redirect with the base URL to give instead, a client failure, the first event
of a stream (all the readiness probe reads). Used by openai_backend.py; aiohttp imported lazily."""

from __future__ import annotations

import json
from urllib.parse import urljoin

from .openai_stream import SseReader

ERROR_BODY_BYTES = 4096  # of an error answer: enough for its message, bounded whatever the server sends
PROBE_EVENT_BYTES = 1 << 16  # the probe reads at most this much looking for the first event


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def error_detail(status: int, body: bytes) -> str:
    """The server's own message of an error answer (FastAPI 'detail', OpenAI 'error.message')."""
    text = body[:4096].decode("utf-8", "replace")
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            err = obj.get("error", obj.get("detail", obj.get("message")))
            if isinstance(err, dict):
                err = err.get("message", err)
            if err is not None:
                text = err if isinstance(err, str) else json.dumps(err)
    except json.JSONDecodeError:
        pass
    return f"HTTP {status}: {_one_line(text)}"


def redirect_detail(url: str, status: int, location: str | None) -> str:
    """One line for a 3xx answer: the suite never follows it; it names the base URL to give instead
    (the Location with the API path taken off, when it ends with it)."""
    if not location:
        return f"{url} answered HTTP {status} (a redirect without a Location): the suite does not follow redirects"
    target = urljoin(url, location)
    base = target.rstrip("/")
    for path in ("/chat/completions", "/completions"):
        if base.endswith(path):
            base = base[: -len(path)]
            break
    else:
        return (f"{url} redirects (HTTP {status}) to {target}: the suite does not follow redirects; "
                "give --moeperf-endpoint the server's OpenAI base URL")
    return (f"{url} redirects (HTTP {status}) to {target}: the suite does not follow redirects; "
            f"give --moeperf-endpoint {base}")


def client_error(exc: BaseException, base_url: str, chunks: int) -> str:
    """One line for an aiohttp failure during a request."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return _one_line(f"cannot connect to {base_url}: {getattr(exc, 'os_error', None) or exc}")
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        return _one_line(f"stream cut off after {chunks} chunks: {exc or type(exc).__name__}")
    return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


async def body_head(resp, limit: int = ERROR_BODY_BYTES) -> bytes:
    """At most ``limit`` bytes of a response body (an error answer may be huge or never end)."""
    out = b""
    while len(out) < limit:
        part = await resp.content.read(limit - len(out))
        if not part:
            break
        out += part
    return out


async def first_event(resp) -> str | None:
    """The data of the stream's first event, reading at most PROBE_EVENT_BYTES; None at the end."""
    reader, seen = SseReader(), 0
    while seen < PROBE_EVENT_BYTES:
        raw = await resp.content.readline()
        if not raw:
            return reader.flush()
        seen += len(raw)
        data = reader.feed(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if data is not None:
            return data
    return None
