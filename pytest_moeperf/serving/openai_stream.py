"""Pure parsing of an OpenAI-compatible streamed response (server-sent events). No I/O, no httpx.

Kept apart from the client so the protocol rules are unit-tested without a server:
- SSE (WHATWG): an event is the ``data:`` lines up to a blank line, joined with newlines; lines
  starting with ``:`` are comments; ``event:``/``id:``/``retry:`` fields are ignored here.
- OpenAI streams: each event is one JSON object, ``data: [DONE]`` ends the stream (vLLM, SGLang,
  TGI, OpenAI). ``transformers serve`` sends no ``[DONE]``: its last event carries ``finish_reason``
  and ``usage``. A stream that ends with neither was cut off.
- A chunk is content-bearing when it carries generated text (``delta.content`` or
  ``delta.reasoning_content`` for chat, ``text`` for completions); role-only and empty chunks are
  not, so TTFT is stamped at the first content-bearing chunk.
- Tokens per chunk follow vLLM's ``bench serve`` convention: one content-bearing chunk counts as
  one token unless the server says otherwise (vLLM's ``continuous_usage_stats`` puts a cumulative
  ``usage.completion_tokens`` in every chunk; then the chunk counts the increase). The request's
  output length comes from the final ``usage`` (``stream_options.include_usage``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DONE = "[DONE]"


class StreamProtocolError(ValueError):
    """The server sent something that is not an OpenAI stream event (one line, for BackendError)."""


class SseReader:
    """Feed lines (without their line ending); returns each event's data once the event is complete."""

    def __init__(self):
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            return self.flush()
        if line.startswith(":"):  # comment / keep-alive
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        """The pending event at end of stream (a last event not followed by a blank line)."""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


@dataclass(frozen=True)
class StreamEvent:
    text: str  # generated text in this chunk ("" when not content-bearing)
    finish_reason: str | None
    completion_tokens: int | None  # usage.completion_tokens when the chunk carries usage
    prompt_tokens: int | None
    model: str | None
    done: bool = False  # the [DONE] sentinel

    @property
    def content_bearing(self) -> bool:
        return bool(self.text)


def parse_event(data: str, api: str) -> StreamEvent:
    """One SSE event's data -> StreamEvent; raises StreamProtocolError for an error event or non-JSON."""
    if data.strip() == DONE:
        return StreamEvent("", None, None, None, None, done=True)
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        raise StreamProtocolError(f"not a JSON stream event: {data[:80]!r}") from None
    if not isinstance(obj, dict):
        raise StreamProtocolError(f"not a JSON object: {data[:80]!r}")
    if "error" in obj:  # vLLM and transformers serve report mid-stream failures this way
        err = obj["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise StreamProtocolError(f"server error mid-stream: {str(msg).splitlines()[0][:200] if msg else '?'}")
    text, finish = "", None
    choices = obj.get("choices") or []
    if choices and isinstance(choices[0], dict):
        choice = choices[0]
        finish = choice.get("finish_reason")
        if api == "chat":
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise StreamProtocolError("chat chunk without a delta object")
            text = (delta.get("content") or "") + (delta.get("reasoning_content") or delta.get("reasoning") or "")
        else:
            text = choice.get("text") or ""
    usage = obj.get("usage") or {}
    return StreamEvent(
        text=text,
        finish_reason=finish,
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        model=obj.get("model"),
    )


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class TokenTally:
    """Tokens of each content-bearing chunk: the growth of a cumulative usage count when the server
    sends one in every chunk, else one (vLLM's convention). Tracks the last usage seen."""

    def __init__(self):
        self.chunks = 0  # content-bearing chunks
        self.counted = 0  # tokens attributed to chunks
        self.completion_tokens: int | None = None  # the latest usage.completion_tokens
        self.prompt_tokens: int | None = None
        self._continuous = False

    def add(self, event: StreamEvent) -> int:
        """Tokens to attribute to this event (0 when it is not content-bearing)."""
        if event.prompt_tokens is not None:
            self.prompt_tokens = event.prompt_tokens
        if event.completion_tokens is not None:
            if event.content_bearing and event.finish_reason is None:
                self._continuous = True  # usage inside content chunks: a running count
            self.completion_tokens = event.completion_tokens
        if not event.content_bearing:
            return 0
        self.chunks += 1
        tokens = 1
        if self._continuous and event.completion_tokens is not None:
            tokens = max(event.completion_tokens - self.counted, 1)
        self.counted += tokens
        return tokens
