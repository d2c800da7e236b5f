"""A thousand clients long-polling one run ride the gateway's one pub/sub subscription:
they share a few Redis connections, and every one answers once the run ends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from faults import submit_all, wait_running, work
from test_streams import redis_connections, rss_kb

from langscale.localredis import LocalRedis

from support import Stack

CLIENTS = 1000


async def long_poll(port: int, path: str, connected: list[int], ready: asyncio.Event) -> Any:
    """One GET on its own connection (a raw client: httpx with a thousand concurrent
    connections spends more time in its pool than the gateway does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    connected[0] += 1
    if connected[0] == CLIENTS:
        ready.set()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return status, json.loads(body)


def test_a_thousand_long_polls_share_a_few_redis_connections(
    stack_factory: Any, redis_server: LocalRedis
) -> None:
    stack: Stack = stack_factory(workers=1)
    (run_id,) = submit_all(stack, [work(4, seconds=12, chunks=2)])
    wait_running(stack, run_id)
    assert stack.gateway is not None
    rss_before = rss_kb(stack.gateway.pid)

    async def clients() -> tuple[list[Any], int, int]:
        connected = [0]
        ready = asyncio.Event()
        path = f"/v1/runs/{run_id}?wait=60"
        tasks = [
            asyncio.create_task(long_poll(stack.port, path, connected, ready))
            for _ in range(CLIENTS)
        ]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(2)  # every request is being served (waiting) now
        assert stack.gateway is not None
        connections = redis_connections(stack.gateway.pid, redis_server.port)
        rss = rss_kb(stack.gateway.pid)
        return list(await asyncio.gather(*tasks)), connections, rss

    answers, connections, rss_during = asyncio.run(clients())
    print(
        f"{CLIENTS} long-polls: {connections} Redis connections from the gateway; "
        f"gateway RSS +{(rss_during - rss_before) / CLIENTS:.1f} KB per long-poll"
    )
    assert connections <= 10
    assert {status for status, _ in answers} == {200}
    assert {body["state"] for _, body in answers} == {"succeeded"}, "each answered at the end"
    assert httpx.get(f"{stack.url}/v1/runs/{run_id}", timeout=5).json()["state"] == "succeeded"
