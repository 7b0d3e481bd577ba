"""A ServingBackend that drives any OpenAI-compatible server (vLLM, SGLang, TGI, transformers serve)
over HTTP with streaming, for the same load generator as the in-process engine.

Client: httpx (the maintained async HTTP client the openai package itself is built on), with the
small SSE reader of openai_stream.py. Not the openai package: it hides the raw events (usage
chunks, non-standard fields, an ignored ``stream``) behind typed objects and retries on its own,
and the suite must see and time every event as it arrives. The client never follows redirects
and ignores proxy settings from the environment: requests only ever go to the URL the user gave.

Faults become one-line BackendErrors (the load generator records a failed request) or, at start,
one clear line: unreachable server, HTTP 4xx/5xx, a server that answers JSON to ``stream: true``,
a stream cut off, a request past --moeperf-endpoint-timeout-s.
"""

from __future__ import annotations

import asyncio
import json
import time

from .backend import BackendError, Chunk, ServingRequest, StreamEnd
from .endpoint import EOS_FIELDS, EndpointConfig
from .openai_stream import SseReader, StreamProtocolError, TokenTally, parse_event

PROBE_MESSAGES = ({"role": "user", "content": "Hi"},)
PROBE_RETRY_S = 0.5  # between readiness attempts while the port is closed or the server answers 5xx
MAX_PROBE_ATTEMPTS = 2000  # with the deadline: the readiness loop is bounded in count and time
ERROR_BODY_CHARS = 300


def eos_fields(kind: str, max_new_tokens: int) -> dict:
    """Request fields that force ``max_new_tokens`` past EOS for the server kind (endpoint.EOS_FIELDS)."""
    if kind == "ignore_eos":
        return {"ignore_eos": True}
    if kind == "generation_config":
        return {"generation_config": json.dumps({"eos_token_id": -1, "max_new_tokens": max_new_tokens})}
    return {}


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _error_detail(status: int, body: bytes) -> str:
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


class OpenAIBackend:
    """``start()`` waits until the server answers a one-token streamed request (bounded by
    ready_timeout_s), detects the ignore-EOS field it accepts and reads its identity; ``stream()``
    runs one request; ``close()`` closes the connections."""

    name = "openai"

    def __init__(self, config: EndpointConfig, tokenizer=None, *, forms: dict | None = None, clock=time.monotonic,
                 sleep=asyncio.sleep):
        self.config = config
        self.tokenizer = tokenizer  # local tokenizer to check the server's token counts, or None
        # prompt ids -> (text, messages), made with the workload (endpoint_runner.FormsPromptCache)
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
        import httpx

        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            follow_redirects=False, trust_env=False,
        )

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
            await client.aclose()

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
        import httpx

        cfg = self.config
        body = self._body(PROBE_MESSAGES, "Hi", (), 1, kind)
        try:
            async with self._client.stream("POST", self._url(), json=body,
                                           timeout=httpx.Timeout(remaining_s, connect=min(cfg.connect_timeout_s,
                                                                                          remaining_s))) as resp:
                payload = await resp.aread()
                if resp.status_code != 200:
                    return resp.status_code, _error_detail(resp.status_code, payload)
                ctype = resp.headers.get("content-type", "")
                if not ctype.startswith("text/event-stream"):
                    return "stream-ignored", f"content-type {ctype or 'none'}"
                self.identity["server_header"] = resp.headers.get("server")
                for line in payload.decode("utf-8", "replace").splitlines():
                    if line.startswith("data:") and '"model"' in line:
                        try:
                            self.identity["server_model"] = json.loads(line[5:]).get("model")
                            self.identity["system_fingerprint"] = json.loads(line[5:]).get("system_fingerprint")
                        except (json.JSONDecodeError, AttributeError):
                            pass
                        break
                return 200, "ok"
        except httpx.TimeoutException:
            return None, "no answer before the ready timeout"
        except httpx.HTTPError as exc:
            return None, _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    async def _read_identity(self) -> None:
        """Best effort: the models the server lists and its version (vLLM's GET /version)."""
        import httpx

        for key, url in (("server_models", f"{self.config.base_url}/models"),
                         ("server_version", f"{self.config.origin}/version")):
            try:
                resp = await self._client.get(url, timeout=min(5.0, self.config.request_timeout_s))
                if resp.status_code != 200:
                    self.identity[key] = f"HTTP {resp.status_code}"
                    continue
                obj = resp.json()
                if key == "server_models":
                    self.identity[key] = [m.get("id") for m in obj.get("data", []) if isinstance(m, dict)]
                else:
                    self.identity[key] = obj.get("version") if isinstance(obj, dict) else None
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                self.identity[key] = f"unavailable ({type(exc).__name__})"

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

    async def stream(self, request: ServingRequest):
        import httpx

        if self._client is None:
            raise BackendError("the endpoint backend was not started")
        if asyncio.get_running_loop() is not self._loop:  # httpx connections belong to one event loop
            raise BackendError("the endpoint backend is used from another event loop than the one it started in")
        text, messages = request.prompt_text, request.messages
        if text is None or messages is None:
            text_form, messages_form = self.forms.get(request.prompt_ids, (None, None))
            text, messages = text if text is not None else text_form, messages or messages_form
        if self.config.api == "chat" and not messages:
            raise BackendError("this prompt has no exact chat-message form for the tokenizer's template; "
                               "use --moeperf-endpoint-api completions")
        eos_kind = self.eos_field if request.ignore_eos else "none"
        body = self._body(messages or (), text, request.prompt_ids, request.max_new_tokens, eos_kind)
        timeout_s = self.config.request_timeout_s
        deadline = self._clock() + timeout_s
        tally, reader, texts = TokenTally(), SseReader(), []
        finish, done = None, False
        try:
            async with self._client.stream("POST", self._url(), json=body) as resp:
                if resp.status_code != 200:
                    raise BackendError(_error_detail(resp.status_code, await resp.aread()))
                ctype = resp.headers.get("content-type", "")
                if not ctype.startswith("text/event-stream"):
                    raise BackendError(f"server ignored stream=true (answered {ctype or 'no content-type'})")
                async for line in resp.aiter_lines():
                    if self._clock() > deadline:
                        raise BackendError(f"request timed out after {timeout_s:g} s (--moeperf-endpoint-timeout-s)")
                    data = reader.feed(line)
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
                data = reader.flush()
                if data is not None and not done:
                    event = parse_event(data, self.config.api)
                    done = event.done
                    finish = event.finish_reason or finish
                    tally.add(event)
        except httpx.TimeoutException:
            raise BackendError(f"request timed out after {timeout_s:g} s (--moeperf-endpoint-timeout-s)") from None
        except httpx.ConnectError as exc:
            raise BackendError(_one_line(f"cannot connect to {self.config.base_url}: {exc}")) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise BackendError(_one_line(f"stream cut off after {tally.chunks} chunks: {exc or type(exc).__name__}")) from None
        except httpx.HTTPError as exc:
            raise BackendError(_one_line(f"{type(exc).__name__}: {exc}")) from None
        except StreamProtocolError as exc:
            raise BackendError(str(exc)) from None
        if not done and finish is None:
            raise BackendError(f"stream cut off after {tally.chunks} chunks (no finish_reason, no [DONE])")
        yield self._end(request, tally, finish, "".join(texts))

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
