"""A ServingBackend that drives any OpenAI-compatible server (vLLM, SGLang, TGI, transformers serve)
over HTTP with streaming, for the same load generator as the in-process engine.

Client: aiohttp (the well-kept asyncio HTTP client vLLM's own ``bench serve`` uses), with the small
SSE reader of openai_stream.py. Measured against httpx on the same loopback stub, with the same
parsing, it cost 6-9x less CPU per request (docs/serving.md, benchmarks/test_serving_harness.py).
--moeperf-client-workers spreads a point over processes (client_workers.py). Not the openai package: it hides the raw events (usage chunks, non-standard fields, an
ignored ``stream``) behind typed objects and retries on its own, and the suite must see and time
every event as it arrives. The client never follows redirects (a 3xx is one line naming the URL to
use) and ignores proxy settings from the environment: requests only ever go to the URL the user gave.

Every exchange has a deadline for the whole of it, not per read: a request ends at
--moeperf-endpoint-timeout-s (aiohttp's ``total`` timeout spans connecting, sending, the status
line, the headers and every body read, so a server that trickles a byte a second is cut off on
time), and each readiness probe at what is left of --moeperf-endpoint-ready-timeout-s
(``asyncio.wait_for`` around the probe, which reads only the head and the first event).

Faults become one-line BackendErrors (the load generator records a failed request) or, at start,
one clear line: unreachable server, HTTP 3xx/4xx/5xx, a server that answers JSON to ``stream: true``,
a stream cut off, a request past its deadline.
"""

from __future__ import annotations

import asyncio
import json
import time

from .backend import BackendError, Chunk, ServingRequest, StreamEnd
from .endpoint import EOS_FIELDS, EndpointConfig
from .openai_answers import body_head, client_error, error_detail, first_event, redirect_detail
from .openai_stream import SseReader, StreamProtocolError, TokenTally, parse_event

PROBE_MESSAGES = ({"role": "user", "content": "Hi"},)
PROBE_RETRY_S = 0.5  # between readiness attempts while the port is closed or the server answers 5xx
MAX_PROBE_ATTEMPTS = 2000  # with the deadline: the readiness loop is bounded in count and time
IDENTITY_BODY_BYTES = 1 << 20  # of GET /models and /version
KEEPALIVE_S = 4.0
MAX_LINE_BYTES = 1 << 22  # one SSE line; past it the answer is not an event stream


def eos_fields(kind: str, max_new_tokens: int) -> dict:
    """Request fields that force ``max_new_tokens`` past EOS for the server kind (endpoint.EOS_FIELDS)."""
    if kind == "ignore_eos":
        return {"ignore_eos": True}
    if kind == "generation_config":
        return {"generation_config": json.dumps({"eos_token_id": -1, "max_new_tokens": max_new_tokens})}
    return {}


class OpenAIBackend:
    """``start()`` waits until the server answers a one-token streamed request (bounded by
    ready_timeout_s), detects the ignore-EOS field it accepts and reads its identity; ``stream()``
    runs one request; ``close()`` closes the connections."""

    name = "openai"

    def __init__(self, config: EndpointConfig, tokenizer=None, *, forms: dict | None = None, clock=time.monotonic,
                 sleep=asyncio.sleep):
        self.config = config
        self.tokenizer = tokenizer  # local tokenizer to check the server's token counts, or None
        # prompt ids -> (text, messages), made with the workload (endpoint_target.FormsPromptCache)
        self.forms = forms if forms is not None else {}
        self._clock = clock
        self._sleep = sleep
        self._client = None
        self._loop = None
        self.eos_field: str | None = None
        self.identity: dict = {}
        self.prompt_mismatches = 0  # requests whose served prompt length differs from the asked one
        self.output_mismatches = 0  # requests whose output length differs from the asked one
        self.local_count_mismatches = 0  # usage count != local tokenizer count of the text
        self.example_mismatch: dict | None = None

    # ---- lifecycle ----

    async def open(self) -> None:
        """The HTTP client alone, no readiness probe (start() does both)."""
        import aiohttp

        cfg = self.config
        self._loop = asyncio.get_running_loop()
        # total: the whole exchange (connect, status line, headers, every body read), not one read
        self._client = aiohttp.ClientSession(
            # idle connections are dropped before uvicorn's 5 s keep-alive ends, so a request is never
            # sent on a connection the server is closing (a POST is not retried)
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=cfg.request_timeout_s, connect=cfg.connect_timeout_s),
            trust_env=False, auto_decompress=False)

    async def start(self) -> None:
        await self.open()
        try:
            await self._probe()
            await self._read_identity()
        except BaseException:
            await self.close()
            raise

    def alive(self) -> bool:
        return self._client is not None  # a dead server shows as failed records, not here

    def reset_kv_peak(self) -> None:
        """The server's KV cache is not visible over HTTP."""

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def describe(self) -> dict:
        cfg = self.config
        return {
            "backend": self.name,
            "endpoint": cfg.base_url,
            "endpoint_api": cfg.api,
            "endpoint_model": cfg.model,
            **self.identity,
            "eos_field": self.eos_field,
            "request_timeout_s": cfg.request_timeout_s,
            "energy_gpu": cfg.energy_gpu,  # None: the server's GPU is not on this machine, no energy
            "prompt_tokens_mismatched_requests_since_start": self.prompt_mismatches,
            "output_tokens_mismatched_requests_since_start": self.output_mismatches,
            "local_tokenizer_mismatched_requests_since_start": self.local_count_mismatches if self.tokenizer else None,
            "example_mismatch": self.example_mismatch,
        }

    # ---- readiness, EOS field, identity ----

    async def _probe(self) -> None:
        """Wait until a one-token streamed request succeeds (GET /v1/models is no readiness signal:
        transformers serve 5.17 answers it HTTP 500 for a local model path). 4xx is final for a
        candidate EOS field: the next one is tried, and 4xx without any extra field is fatal."""
        cfg = self.config
        candidates = EOS_FIELDS if cfg.eos_field == "auto" else (cfg.eos_field,)
        deadline = self._clock() + cfg.ready_timeout_s
        rejected: list[str] = []
        last = "no answer"
        for _attempt in range(MAX_PROBE_ATTEMPTS):
            kind = candidates[len(rejected)]
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            status, detail = await self._probe_once(kind, remaining)
            if status == 200:
                self.eos_field = kind
                self.identity["eos_fields_rejected"] = rejected
                return
            if status == "redirect":
                raise BackendError(detail)
            if status == "stream-ignored":
                raise BackendError(f"{cfg.base_url} answered stream=true with {detail}: the suite needs a "
                                   "streaming (server-sent events) endpoint")
            if isinstance(status, int) and 400 <= status < 500:
                rejected.append(f"{kind} ({detail})")
                if len(rejected) < len(candidates):
                    continue
                raise BackendError(f"{cfg.base_url} rejected the request for model {cfg.model!r}: {detail} "
                                   "(check --moeperf-endpoint-model and --moeperf-endpoint-api)")
            last = detail
            await self._sleep(min(PROBE_RETRY_S, max(deadline - self._clock(), 0)))
        raise BackendError(f"{cfg.base_url} not ready after {cfg.ready_timeout_s:g} s: {last} (is the server "
                           "running at that URL? a longer load: --moeperf-endpoint-ready-timeout-s)")

    async def _probe_once(self, kind: str, remaining_s: float):
        """One readiness attempt, bounded as a whole by ``remaining_s`` (wait_for around the exchange,
        whatever the server trickles): (200 | status | "stream-ignored" | "redirect" | None, detail)."""
        try:
            return await asyncio.wait_for(self._probe_exchange(kind, remaining_s), remaining_s)
        except asyncio.TimeoutError:
            return None, "no complete answer before the ready timeout"
        except Exception as exc:  # aiohttp.ClientError and the socket's own errors: retried until the deadline
            return None, client_error(exc, self.config.base_url, 0)

    async def _probe_exchange(self, kind: str, remaining_s: float):
        import aiohttp

        cfg = self.config
        body = self._body(PROBE_MESSAGES, "Hi", (), 1, kind)
        timeout = aiohttp.ClientTimeout(total=remaining_s, connect=min(cfg.connect_timeout_s, remaining_s))
        async with self._client.post(self._url(), json=body, timeout=timeout, allow_redirects=False) as resp:
            if 300 <= resp.status < 400:
                return "redirect", redirect_detail(self._url(), resp.status, resp.headers.get("location"))
            if resp.status != 200:
                return resp.status, error_detail(resp.status, await body_head(resp))
            ctype = resp.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                return "stream-ignored", f"content-type {ctype or 'none'}"
            self.identity["server_header"] = resp.headers.get("server")
            data = await first_event(resp)  # only what the probe needs: a stream may never end
            if data is None:
                return None, "the stream ended without an event"
            try:
                obj = json.loads(data)
                if isinstance(obj, dict):
                    self.identity["server_model"] = obj.get("model")
                    self.identity["system_fingerprint"] = obj.get("system_fingerprint")
            except json.JSONDecodeError:
                pass
            resp.close()  # drops the connection: the rest of the stream is not read
            return 200, "ok"

    async def _read_identity(self) -> None:
        """Best effort: the models the server lists and its version (vLLM's GET /version), each bounded
        as a whole by 5 s (or the request timeout when shorter)."""
        limit = min(5.0, self.config.request_timeout_s)
        for key, url in (("server_models", f"{self.config.base_url}/models"),
                         ("server_version", f"{self.config.origin}/version")):
            try:
                self.identity[key] = await asyncio.wait_for(self._get_identity(key, url, limit), limit)
            except Exception as exc:  # timeout, connection, JSON, shape: recorded, never fatal
                self.identity[key] = f"unavailable ({type(exc).__name__})"

    async def _get_identity(self, key: str, url: str, limit: float):
        import aiohttp

        async with self._client.get(url, timeout=aiohttp.ClientTimeout(total=limit), allow_redirects=False) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status}"
            obj = json.loads(await body_head(resp, IDENTITY_BODY_BYTES))
            if key == "server_models":
                return [m.get("id") for m in obj.get("data", []) if isinstance(m, dict)]
            return obj.get("version") if isinstance(obj, dict) else None

    # ---- one request ----

    def _url(self) -> str:
        return f"{self.config.base_url}/{'chat/completions' if self.config.api == 'chat' else 'completions'}"

    def _body(self, messages, prompt_text, prompt_ids, max_new_tokens: int, eos_kind: str) -> dict:
        body = {"model": self.config.model, "max_tokens": max_new_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        if self.config.api == "chat":
            body["messages"] = [dict(m) for m in messages]
        else:  # the exact text when known, else the token ids (vLLM and SGLang accept a list of ids)
            body["prompt"] = prompt_text if prompt_text is not None else list(prompt_ids)
        body.update(eos_fields(eos_kind, max_new_tokens))
        return body

    def _request_body(self, request: ServingRequest) -> dict:
        """The request's JSON body, its prompt in the exact form the API takes (text or chat messages)."""
        text, messages = request.prompt_text, request.messages
        if text is None or messages is None:
            text_form, messages_form = self.forms.get(request.prompt_ids, (None, None))
            text, messages = text if text is not None else text_form, messages or messages_form
        if self.config.api == "chat" and not messages:
            raise BackendError("this prompt has no exact chat-message form for the tokenizer's template; "
                               "use --moeperf-endpoint-api completions")
        eos_kind = self.eos_field if request.ignore_eos else "none"
        return self._body(messages or (), text, request.prompt_ids, request.max_new_tokens, eos_kind)

    async def stream(self, request: ServingRequest):
        if self._client is None:
            raise BackendError("the endpoint backend was not started")
        if asyncio.get_running_loop() is not self._loop:  # aiohttp connections belong to one event loop
            raise BackendError("the endpoint backend is used from another event loop than the one it started in")
        body = self._request_body(request)
        timeout_s = self.config.request_timeout_s
        late = f"request timed out after {timeout_s:g} s (--moeperf-endpoint-timeout-s)"
        deadline = self._clock() + timeout_s
        tally, reader, texts = TokenTally(), SseReader(), []
        finish, done = None, False
        try:  # the session's total timeout bounds the whole exchange (open()); the clock check is a second guard
            async with self._client.post(self._url(), json=body, allow_redirects=False) as resp:
                self._check_answer(resp.status, resp.headers)
                if resp.status != 200:
                    raise BackendError(error_detail(resp.status, await body_head(resp)))
                pending = b""  # one await per read from the socket, not per line (a third of the CPU)
                async for part in resp.content.iter_any():
                    if self._clock() > deadline:
                        raise BackendError(late)
                    *lines, pending = (pending + part).split(b"\n")
                    for raw in lines:
                        data = reader.feed(raw.decode("utf-8", "replace").rstrip("\r"))
                        if data is None:
                            continue
                        event = parse_event(data, self.config.api)
                        if event.done:
                            done = True
                            break
                        tokens = tally.add(event)
                        if tokens:
                            texts.append(event.text)
                            yield Chunk(tokens=tokens)
                        finish = event.finish_reason or finish
                    if done:
                        break
                    if len(pending) > MAX_LINE_BYTES:
                        raise BackendError(f"a stream line longer than {MAX_LINE_BYTES} bytes: not an event stream")
                if pending and not done:
                    reader.feed(pending.decode("utf-8", "replace").rstrip("\r"))
                data = reader.flush()
                if data is not None and not done:
                    event = parse_event(data, self.config.api)
                    done = event.done
                    finish = event.finish_reason or finish
                    tally.add(event)
        except asyncio.TimeoutError:
            raise BackendError(late) from None
        except (BackendError, StreamProtocolError) as exc:
            raise BackendError(str(exc)) from None
        except Exception as exc:  # aiohttp.ClientError, a line past aiohttp's limit: one line, a failed request
            raise BackendError(client_error(exc, self.config.base_url, tally.chunks)) from None
        if not done and finish is None:
            raise BackendError(f"stream cut off after {tally.chunks} chunks (no finish_reason, no [DONE])")
        yield self._end(request, tally, finish, "".join(texts))

    def _check_answer(self, status: int, headers) -> None:
        """A redirect or a non-streaming 200 is a failed request, one line each."""
        if 300 <= status < 400:
            raise BackendError(redirect_detail(self._url(), status, headers.get("location")))
        ctype = headers.get("content-type", "")
        if status == 200 and not ctype.startswith("text/event-stream"):
            raise BackendError(f"server ignored stream=true (answered {ctype or 'no content-type'})")

    def _end(self, request: ServingRequest, tally: TokenTally, finish, text: str) -> StreamEnd:
        info = {"finish_reason": finish, "chunks": tally.chunks}
        output = tally.completion_tokens
        info["output_tokens_source"] = "usage" if output is not None else "chunks"
        if output is None:
            output = tally.counted
        if self.tokenizer is not None:  # decoding then encoding may differ by a token or two: recorded
            local = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            info["output_tokens_local"] = local
            if tally.completion_tokens is not None and local != tally.completion_tokens:
                self.local_count_mismatches += 1
        mismatch = {}
        if tally.prompt_tokens is not None and tally.prompt_tokens != request.input_tokens:
            self.prompt_mismatches += 1
            mismatch["prompt_tokens"] = {"asked": request.input_tokens, "served": tally.prompt_tokens}
        if request.ignore_eos and output != request.max_new_tokens:
            self.output_mismatches += 1
            mismatch["output_tokens"] = {"asked": request.max_new_tokens, "served": output}
        if mismatch:
            info["mismatch"] = mismatch
            if self.example_mismatch is None:
                self.example_mismatch = {"request_id": request.request_id, **mismatch}
        return StreamEnd(input_tokens=tally.prompt_tokens, output_tokens=output, info=info)
