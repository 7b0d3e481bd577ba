"""The interface between the load generator and whatever serves the requests.

A backend turns one request into a stream of chunks. The load generator owns the clock: it
stamps each chunk as it arrives, so every backend (the in-process continuous-batching engine,
an OpenAI-compatible server over HTTP, a stub in a benchmark) is timed the same way. A backend
may also pass the engine's own timestamp of a chunk, so the two clocks can be checked against
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol, Union


@dataclass(frozen=True)
class ServingRequest:
    """One request of a workload: the exact post-template prompt and the output length asked for."""

    request_id: str
    prompt_ids: tuple[int, ...]  # the exact post-template token ids (len == input_tokens)
    max_new_tokens: int
    prompt_text: str | None = None  # the same prompt as text, for backends that take text
    messages: tuple[dict, ...] | None = None  # the chat messages the template was applied to
    ignore_eos: bool = True  # force the output length (EOS ignored) unless the workload says otherwise

    @property
    def input_tokens(self) -> int:
        return len(self.prompt_ids)


@dataclass(frozen=True)
class Chunk:
    """Output that reached the client at once. Servers may pack several tokens in one chunk
    (vLLM's convention: the chunk's arrival time is the time of all its tokens)."""

    tokens: int
    engine_time_s: float | None = None  # the engine's own stamp (its clock), when it gives one


@dataclass(frozen=True)
class StreamEnd:
    """The last item of a stream: what the backend knows once the request is done."""

    input_tokens: int | None = None  # as the server counted them (usage), None when unknown
    output_tokens: int | None = None
    info: dict = field(default_factory=dict)  # backend-specific: finish_reason, engine ids, ...


class BackendError(RuntimeError):
    """A request failed; the message is one line. The load generator records it, never drops it."""


StreamItem = Union[Chunk, StreamEnd]


class ServingBackend(Protocol):
    """What the load generator drives. ``stream`` is an async generator of Chunk items ending
    with one StreamEnd; it raises BackendError for a failed request."""

    name: str

    async def start(self) -> None: ...

    def stream(self, request: ServingRequest) -> AsyncIterator[StreamItem]: ...

    async def close(self) -> None: ...

    def describe(self) -> dict:
        """Settings and identity recorded in extra_info (engine options, endpoint, server version)."""
        ...
