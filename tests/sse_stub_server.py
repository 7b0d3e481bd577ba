"""A tiny real HTTP server on loopback for the protocol faults a real OpenAI server will not produce on
demand (an ignored ``stream``, a stream cut off, a stall, a 5xx). asyncio sockets only, no framework.
Run in-process (``serve(mode)``) or as a process to be killed mid-stream:
``python tests/sse_stub_server.py PORTFILE MODE``.

Modes: ok (3 chunks + usage + [DONE]), slow (one chunk every 0.2 s, 200 chunks), cut (2 chunks, then
the connection closes mid-body), json (answers stream=true with application/json), stall (headers and
one chunk, then nothing), 503 (every request), 422 (every request), serial (one request at a time,
``max_tokens`` chunks 10 ms apart, 10 ms more per queued request: a server the load overwhelms).
Hostile modes, every byte TRICKLE_S apart so no single read ever times out: trickle-status (the status
line and headers a byte at a time), trickle-body (SSE headers, then the body a byte at a time, never
ending), keepalive (SSE headers, then ``: ping`` comments forever, never an event), endless (content
chunks forever, never a finish_reason), redirect (307 to /v2/..., the same path under another root).
fast: keep-alive connections, every answer written at once (``max_tokens`` chunks, a finish chunk, a
usage chunk, [DONE]) by an asyncio Protocol: the cheapest server here, for the client's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import sys


def _event(obj) -> bytes:
    data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"  # one HTTP/1.1 chunk


def _chunk(text: str, finish=None, usage=None) -> dict:
    obj = {"model": "stub", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    if usage:
        obj["usage"] = usage
    return obj


TRICKLE_S = 0.05
REQUESTS = [0]  # requests read so far (an in-process stub's test can wait on it)
_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
_SERIAL = None  # asyncio.Lock of the serial mode, made in the server's loop


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: str) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        REQUESTS[0] += 1
        if mode == "serial":
            await _serial(writer, json.loads(body or b"{}").get("max_tokens", 4))
            return
        if mode in ("503", "422"):
            body = json.dumps({"error": {"message": f"stub answers {mode}"}}).encode()
            writer.write(f"HTTP/1.1 {mode} Nope\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                         f"connection: close\r\n\r\n".encode() + body)
            await writer.drain()
            return
        if mode in HOSTILE:
            await HOSTILE[mode](writer)
            return
        if mode == "json":
            body = json.dumps({"model": "stub", "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
                               "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")
        if mode == "ok":
            for text in ("a", "b"):
                writer.write(_event(_chunk(text)))
            writer.write(_event(_chunk("c", "length", {"prompt_tokens": 3, "completion_tokens": 3})))
            writer.write(_event("[DONE]") + b"0\r\n\r\n")
        elif mode == "cut":
            writer.write(_event(_chunk("a")) + _event(_chunk("b")))
            await writer.drain()
            writer.transport.abort()  # mid-body: no closing chunk, no finish_reason
            return
        elif mode == "stall":
            writer.write(_event(_chunk("a")))
            await writer.drain()
            await asyncio.sleep(3600)
        elif mode == "slow":
            for _ in range(200):
                writer.write(_event(_chunk("x")))
                await writer.drain()
                await asyncio.sleep(0.2)
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _trickle(writer, data: bytes) -> None:
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
        await asyncio.sleep(TRICKLE_S)


async def _trickle_status(writer) -> None:
    await _trickle(writer, _SSE_HEAD + b"connection: close\r\n\r\n" + _event(_chunk("a")) * 100)


async def _trickle_body(writer) -> None:
    writer.write(_SSE_HEAD + b"connection: close\r\n\r\n")
    while True:
        await _trickle(writer, _event(_chunk("a")))


async def _keepalive(writer) -> None:
    writer.write(_SSE_HEAD + b"connection: close\r\n\r\n")
    while True:
        writer.write(b"8\r\n: ping\n\n\r\n")
        await writer.drain()
        await asyncio.sleep(TRICKLE_S)


async def _endless(writer) -> None:
    writer.write(_SSE_HEAD + b"connection: close\r\n\r\n")
    while True:
        writer.write(_event(_chunk("a")))
        await writer.drain()
        await asyncio.sleep(TRICKLE_S)


async def _redirect(writer) -> None:
    writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /v2/chat/completions\r\ncontent-length: 0\r\n"
                 b"connection: close\r\n\r\n")
    await writer.drain()


HOSTILE = {"trickle-status": _trickle_status, "trickle-body": _trickle_body, "keepalive": _keepalive,
           "endless": _endless, "redirect": _redirect}
_WAITING = [0]


async def _serial(writer, n: int) -> None:
    _WAITING[0] += 1
    async with _SERIAL:
        _WAITING[0] -= 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")  # it serves one request per connection: says so
        for _ in range(n):
            # slower the more requests queue (a thrashing server): more load never adds throughput,
            # whatever the client's own overhead on a busy machine
            await asyncio.sleep(0.01 * (1 + _WAITING[0]))
            writer.write(_event(_chunk("x")))
            await writer.drain()
        writer.write(_event(_chunk("", "length", {"prompt_tokens": 3, "completion_tokens": n})) + _event("[DONE]") + b"0\r\n\r\n")
        await writer.drain()


_MAX_TOKENS = re.compile(rb'"max_tokens":\s*(\d+)')


@functools.lru_cache(maxsize=64)
def _fast_answer(n: int) -> bytes:
    body = b"".join(_event(_chunk("x")) for _ in range(n)) + _event(_chunk("", "length"))
    usage = {"model": "stub", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}}
    return _SSE_HEAD + b"\r\n" + body + _event(usage) + _event("[DONE]") + b"0\r\n\r\n"


class FastStub(asyncio.Protocol):
    """Keep-alive HTTP/1.1, pipelining-safe: each complete request gets its whole answer in one write."""

    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
            found = _MAX_TOKENS.search(body)
            self.transport.write(_fast_answer(int(found.group(1)) if found else 4))


async def serve(mode: str) -> asyncio.AbstractServer:
    """Start the stub on 127.0.0.1 (a free port): ``server.sockets[0].getsockname()[1]``."""
    global _SERIAL
    if mode == "fast":
        return await asyncio.get_running_loop().create_server(FastStub, "127.0.0.1", 0)
    _SERIAL = asyncio.Lock()  # one per server (and event loop)
    return await asyncio.start_server(lambda r, w: _handle(r, w, mode), "127.0.0.1", 0)


@contextlib.contextmanager
def spawned(folder, mode: str):
    """This stub as a process of its own (a server a test can kill): yields ``(process, port)``; the
    process is killed at the end if it still runs. ``folder`` holds the file it writes its port to."""
    import subprocess
    import time

    port_file = folder / "port"
    proc = subprocess.Popen([sys.executable, __file__, str(port_file), mode])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        yield proc, int(port_file.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def _main(port_file: str, mode: str) -> None:
    server = await serve(mode)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    import os

    os.replace(port_file + ".tmp", port_file)
    async with server:
        await asyncio.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 120)  # bounded: the test kills it long before


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2]))
