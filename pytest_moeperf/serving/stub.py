"""A ServingBackend that needs no model: for the harness speed benchmark and the tests.

With ``ttft_s = tpot_s = 0`` it answers at once, so whatever latency the load generator
records is the harness's own. With a clock and delays it plays a server of known timing.
"""

from __future__ import annotations

from .backend import BackendError, Chunk, ServingRequest, StreamEnd


class StubBackend:
    name = "stub"

    def __init__(self, clock=None, ttft_s: float = 0.0, tpot_s: float = 0.0, fail_ids: frozenset = frozenset(),
                 engine_stamps: bool = False):
        self.clock = clock
        self.ttft_s = ttft_s
        self.tpot_s = tpot_s
        self.fail_ids = frozenset(fail_ids)
        self.engine_stamps = engine_stamps
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def describe(self) -> dict:
        return {"backend": self.name, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s}

    async def stream(self, request: ServingRequest):
        if request.request_id in self.fail_ids:
            raise BackendError(f"stub: request {request.request_id} refused")
        clock = self.clock
        for i in range(request.max_new_tokens):
            if clock is not None:
                await clock.sleep(self.ttft_s if i == 0 else self.tpot_s)
            yield Chunk(1, clock.now() if (clock is not None and self.engine_stamps) else None)
        yield StreamEnd(request.input_tokens, request.max_new_tokens, {})
