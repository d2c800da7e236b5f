"""Many runs at once: a worker runs them concurrently, not one after the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from langscale.localredis import LocalRedis

from support import Stack

RUNS = 200
LATENCY = 0.2


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={"fake_latency": LATENCY, "worker_concurrency": 100, "log_level": "WARNING"},
    ).start()
    yield stack
    stack.stop()


async def test_200_concurrent_runs_all_succeed_far_faster_than_sequentially(
    stack: Stack,
) -> None:
    limits = httpx.Limits(max_connections=RUNS)
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as client:

        async def submit(i: int) -> str:
            response = await client.post(
                "/v1/runs", json={"pipeline": "chat", "input": {"question": f"q{i}"}}
            )
            assert response.status_code == 202, response.text
            return str(response.json()["run_id"])

        async def all_final(run_ids: list[str]) -> list[dict]:
            # One polling loop, so the client does not load the gateway it measures.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                runs = [(await client.get(f"/v1/runs/{run_id}")).json() for run_id in run_ids]
                if all(run["state"] in {"succeeded", "failed"} for run in runs):
                    return runs
                await asyncio.sleep(0.2)
            raise TimeoutError("runs did not finish")

        run_ids = await asyncio.gather(*(submit(i) for i in range(RUNS)))
        runs = await all_final(run_ids)

    # From the first run queued to the last one finished, by the runs' own timestamps.
    elapsed = max(r["finished_at"] for r in runs) - min(r["created_at"] for r in runs)
    assert [run["output"] for run in runs] == [f"You said: q{i}" for i in range(RUNS)]
    assert all(run["state"] == "succeeded" and run["attempts"] == 1 for run in runs)
    sequential = RUNS * LATENCY
    assert elapsed < sequential / 4, f"{elapsed:.1f} s for {RUNS} runs"


async def test_200_concurrent_sync_invokes_each_get_their_own_answer(stack: Stack) -> None:
    limits = httpx.Limits(max_connections=RUNS)
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post("/chat/invoke", json={"input": {"question": f"i{i}"}})
                for i in range(RUNS)
            )
        )
    assert [r.status_code for r in responses] == [200] * RUNS
    assert [r.json()["output"] for r in responses] == [f"You said: i{i}" for i in range(RUNS)]
