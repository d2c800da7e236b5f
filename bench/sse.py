"""A minimal SSE client over HTTP/1.1 chunked encoding, for benchmarks and tests.

httpx with httpx-sse spent a full CPU at 100 concurrent streams on this machine (the client,
not the relay, was measured); this one costs a small fraction of that and holds a thousand
streams from one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


async def sse_events(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes = b"",
    host: str = "127.0.0.1",
) -> AsyncIterator[tuple[str, str, str]]:
    """(id, event, data) per event, until the server ends the response."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        buffer = b""
        fields: dict[str, str] = {}
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                return
            buffer += await reader.readexactly(size)
            await reader.readexactly(2)
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.rstrip(b"\r").decode()
                if not line:
                    if fields:
                        yield (
                            fields.get("id", ""),
                            fields.get("event", "message"),
                            fields.get("data", ""),
                        )
                        fields = {}
                    continue
                name, _, value = line.partition(":")
                if name:  # a line starting with ':' is a comment (pings)
                    fields[name] = value[1:] if value.startswith(" ") else value
    finally:
        writer.close()
