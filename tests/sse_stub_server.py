"""A tiny real HTTP server on loopback for the protocol faults a real OpenAI server will not produce on
demand (an ignored ``stream``, a stream cut off, a stall, a 5xx). asyncio sockets only, no framework.
Run in-process (``serve(mode)``) or as a process to be killed mid-stream:
``python tests/sse_stub_server.py PORTFILE MODE``.

Modes: ok (3 chunks + usage + [DONE]), slow (one chunk every 0.2 s, 200 chunks), cut (2 chunks, then
the connection closes mid-body), json (answers stream=true with application/json), stall (headers and
one chunk, then nothing), 503 (every request), 422 (every request), serial (one request at a time,
``max_tokens`` chunks 10 ms apart, 10 ms more per queued request: a server the load overwhelms).
"""

from __future__ import annotations

import asyncio
import json
import sys


def _event(obj) -> bytes:
    data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"  # one HTTP/1.1 chunk


def _chunk(text: str, finish=None, usage=None) -> dict:
    obj = {"model": "stub", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
    if usage:
        obj["usage"] = usage
    return obj


_SERIAL = None  # asyncio.Lock of the serial mode, made in the server's loop


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: str) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        if mode == "serial":
            await _serial(writer, json.loads(body or b"{}").get("max_tokens", 4))
            return
        if mode in ("503", "422"):
            body = json.dumps({"error": {"message": f"stub answers {mode}"}}).encode()
            writer.write(f"HTTP/1.1 {mode} Nope\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                         f"connection: close\r\n\r\n".encode() + body)
            await writer.drain()
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


_WAITING = [0]


async def _serial(writer, n: int) -> None:
    _WAITING[0] += 1
    async with _SERIAL:
        _WAITING[0] -= 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(n):
            # slower the more requests queue (a thrashing server): more load never adds throughput,
            # whatever the client's own overhead on a busy machine
            await asyncio.sleep(0.01 * (1 + _WAITING[0]))
            writer.write(_event(_chunk("x")))
            await writer.drain()
        writer.write(_event(_chunk("", "length", {"prompt_tokens": 3, "completion_tokens": n})) + _event("[DONE]") + b"0\r\n\r\n")
        await writer.drain()


async def serve(mode: str) -> asyncio.AbstractServer:
    """Start the stub on 127.0.0.1 (a free port): ``server.sockets[0].getsockname()[1]``."""
    global _SERIAL
    _SERIAL = asyncio.Lock()  # one per server (and event loop)
    return await asyncio.start_server(lambda r, w: _handle(r, w, mode), "127.0.0.1", 0)


async def _main(port_file: str, mode: str) -> None:
    server = await serve(mode)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    import os

    os.replace(port_file + ".tmp", port_file)
    async with server:
        await asyncio.sleep(120)  # bounded: the test kills it long before


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2]))
