"""Honest, bounded streams: gaps are told, ends close, followers share Redis connections."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults import submit_all, wait_final, wait_running, work

from bench.sse import sse_events
from langscale.localredis import LocalRedis

from support import Stack


async def collect(
    port: int, path: str, headers: dict[str, str] | None = None, **request: Any
) -> list[tuple[str, str, Any]]:
    return [
        (event_id, event, json.loads(data) if data else None)
        async for event_id, event, data in sse_events(port, path, headers, **request)
    ]


@pytest.fixture
def trimming_stack(stack_factory: Any) -> Stack:
    stack: Stack = stack_factory(workers=1, stream_max_len=100)
    return stack


def test_a_resume_behind_the_trimmed_horizon_gets_a_gap_then_every_later_event(
    trimming_stack: Stack,
) -> None:
    accepted = submit_all(trimming_stack, [work(0, seconds=1, chunks=1500)], stream=True)
    (run_id,) = accepted
    wait_final(trimming_stack, [run_id])
    events = asyncio.run(
        collect(trimming_stack.port, f"/v1/runs/{run_id}/stream", {"Last-Event-ID": "5"})
    )
    gap_id, kind, gap = events[0]
    assert kind == "gap" and gap["lost"] == int(gap_id) - 5 and gap["lost"] > 1000
    ids = [int(event_id) for event_id, _, _ in events[1:]]
    assert ids == list(range(int(gap_id) + 1, ids[-1] + 1))  # nothing else missing
    assert events[-1][1] == "end" and events[-1][2]["state"] == "succeeded"


def test_a_langserve_reader_that_fell_behind_gets_an_error_never_a_normal_end(
    trimming_stack: Stack,
) -> None:
    async def slow_reader() -> list[tuple[str, str, Any]]:
        body = json.dumps({"input": work(1, seconds=1, chunks=400, pad=20_000)}).encode()
        events = []
        async for event_id, event, data in sse_events(
            trimming_stack.port, "/recorded/stream", method="POST", body=body
        ):
            events.append((event_id, event, json.loads(data) if data else None))
            if len(events) == 2:
                await asyncio.sleep(4)  # far behind: the run ends and its stream is trimmed
        return events

    events = asyncio.run(slow_reader())
    assert events[0][1] == "metadata"
    assert events[-1][1] == "error" and events[-1][2]["status_code"] == 503
    assert "fell behind" in events[-1][2]["message"]
    assert "end" not in [event for _, event, _ in events]


def test_a_resume_at_the_end_closes_at_once(trimming_stack: Stack) -> None:
    accepted = submit_all(trimming_stack, [work(2)], stream=True)
    (run_id,) = accepted
    wait_final(trimming_stack, [run_id])
    path = f"/v1/runs/{run_id}/stream"
    end_id = asyncio.run(collect(trimming_stack.port, path))[-1][0]
    started = time.monotonic()
    assert asyncio.run(collect(trimming_stack.port, path, {"Last-Event-ID": end_id})) == []
    assert time.monotonic() - started < 2


def redis_connections(pid: int, redis_port: int) -> int:
    """TCP connections from process ``pid`` to Redis's port (its sockets in /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        remote_port = int(parts[2].split(":")[1], 16)
        if remote_port == redis_port and parts[9] in inodes and parts[3] == "01":
            count += 1
    return count


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_thousand_followers_share_at_most_ten_redis_connections(
    stack_factory: Any, redis_server: LocalRedis
) -> None:
    stack: Stack = stack_factory(workers=1)
    accepted = submit_all(stack, [work(3, seconds=15, chunks=30)], stream=True)
    (run_id,) = accepted
    wait_running(stack, run_id)
    assert stack.gateway is not None
    rss_before = rss_kb(stack.gateway.pid)
    path = f"/v1/runs/{run_id}/stream"

    async def followers() -> tuple[list[list[str]], int, int]:
        connected = 0
        ready = asyncio.Event()

        async def one() -> list[str]:
            nonlocal connected
            kinds = []
            async for _, event, _ in sse_events(stack.port, path):
                kinds.append(event)
                if len(kinds) == 1:
                    connected += 1
                    if connected == 1000:
                        ready.set()
            return kinds

        tasks = [asyncio.create_task(one()) for _ in range(1000)]
        await asyncio.wait_for(ready.wait(), 60)
        assert stack.gateway is not None
        connections = redis_connections(stack.gateway.pid, redis_server.port)
        rss = rss_kb(stack.gateway.pid)
        return list(await asyncio.gather(*tasks)), connections, rss

    streams, connections, rss_during = asyncio.run(followers())
    print(
        f"1000 followers: {connections} Redis connections from the gateway; "
        f"gateway RSS +{(rss_during - rss_before) / 1000:.1f} KB per follower"
    )
    assert connections <= 10
    assert all(kinds[-1] == "end" for kinds in streams)  # every follower got it all
    assert all(kinds.count("data") == 30 for kinds in streams)
    assert httpx.get(f"{stack.url}/v1/runs/{run_id}", timeout=5).json()["state"] == "succeeded"
