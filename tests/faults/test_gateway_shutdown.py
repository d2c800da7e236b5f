"""A gateway's shutdown is not a client disconnect: SIGTERM mid-stream cancels no run, and
every client can go on elsewhere."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from typing import Any

import httpx
from faults import records, submit_all, wait_final, wait_running, work

from bench.sse import sse_events

from support import Stack, wait_until


def test_sigterm_ends_streams_and_invokes_resumably_and_cancels_no_run(
    stack_factory: Any,
) -> None:
    stack: Stack = stack_factory(workers=1, gateway_drain_timeout=3)
    accepted = submit_all(stack, [work(0, seconds=8, chunks=16)], stream=True)
    (v1_run,) = accepted
    wait_running(stack, v1_run)
    results: dict[str, Any] = {}

    async def v1_follower() -> None:
        results["v1"] = [
            (i, e, json.loads(d))
            async for i, e, d in sse_events(stack.port, f"/v1/runs/{v1_run}/stream")
        ]

    async def langserve_client() -> None:
        body = json.dumps({"input": work(1, seconds=8, chunks=16)}).encode()
        results["langserve"] = [
            (i, e, json.loads(d) if d else None)
            async for i, e, d in sse_events(
                stack.port, "/recorded/stream", method="POST", body=body
            )
        ]

    def invoke() -> None:
        results["invoke"] = httpx.post(
            f"{stack.url}/recorded/invoke", json={"input": work(2, seconds=8)}, timeout=30
        )

    async def clients() -> None:
        await asyncio.gather(v1_follower(), langserve_client())

    streams = threading.Thread(target=asyncio.run, args=(clients(),))
    invoker = threading.Thread(target=invoke)
    streams.start()
    invoker.start()
    wait_until(lambda: sum(r["state"] == "running" for r in _all_runs(stack)) >= 3, 15)
    assert stack.gateway is not None
    assert stack.gateway.stop(signal.SIGTERM, timeout=20) in (0, -signal.SIGTERM)
    streams.join(20)
    invoker.join(20)

    # /v1 follower: events up to the shutdown, then a reconnect marker (no end).
    v1 = results["v1"]
    assert v1[-1][1] == "reconnect" and v1[-1][2]["reason"] == "gateway_shutdown"
    last_id = v1[-1][2]["last_event_id"]
    assert last_id == v1[-2][0]
    # LangServe client: an error event naming the run, which goes on.
    langserve = results["langserve"]
    langserve_run = langserve[0][2]["run_id"]
    assert langserve[-1][1] == "error" and langserve[-1][2]["status_code"] == 503
    assert langserve_run in langserve[-1][2]["message"]
    # Invoke: a 503 in JSON naming its run.
    response = results["invoke"]
    assert response.status_code == 503 and response.json()["error"]["type"] == "gateway_restarting"
    invoke_run = response.json()["error"]["run_ids"][0]

    # A new gateway: the /v1 client resumes exactly after its last event; nothing was cancelled.
    stack.start_gateway()
    stack.wait_ready()
    rest = asyncio.run(_collect(stack.port, f"/v1/runs/{v1_run}/stream", last_id))
    assert [int(i) for i, _, _ in rest] == list(range(int(last_id) + 1, int(rest[-1][0]) + 1))
    assert rest[-1][1] == "end" and rest[-1][2]["state"] == "succeeded"
    runs = wait_final(stack, [v1_run, langserve_run, invoke_run])
    assert [r["state"] for r in runs] == ["succeeded"] * 3


def _all_runs(stack: Stack) -> list[dict[str, Any]]:
    import redis

    from langscale.keys import RUN

    with redis.Redis.from_url(stack.redis_url) as db:
        ids = [key.decode().rsplit(":", 1)[1] for key in db.scan_iter(f"*}}:{RUN}:*")]
    return records(stack, ids)


async def _collect(port: int, path: str, after: str) -> list[tuple[str, str, Any]]:
    return [
        (i, e, json.loads(d)) async for i, e, d in sse_events(port, path, {"Last-Event-ID": after})
    ]
