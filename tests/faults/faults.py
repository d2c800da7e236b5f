"""Helpers of the fault tests: submitting recorded work, waiting for it, supervising workers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from support import Process, Stack, wait_until

FINAL = {"succeeded", "failed", "cancelled"}


def work(index: int, prefix: str = "w", **extra: Any) -> dict[str, Any]:
    return {"id": f"{prefix}{index}", "seconds": 0.2, "chunks": 4, **extra}


async def _submit_all(url: str, inputs: list[dict[str, Any]], stream: bool) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def submit(value: dict[str, Any]) -> httpx.Response:
            # As a careful client does: one Idempotency-Key per run, retried on 503.
            body = {"pipeline": "recorded", "input": value, "stream": stream}
            headers = {"Idempotency-Key": f"{value['id']}-{stream}"}
            for _ in range(60):
                response = await client.post("/v1/runs", json=body, headers=headers)
                if response.status_code != 503:
                    return response
                await asyncio.sleep(float(response.headers.get("retry-after", 1)) / 5)
            return response

        return await asyncio.gather(*(submit(value) for value in inputs))


def submit_all(
    stack: Stack, inputs: list[dict[str, Any]], stream: bool = False
) -> dict[str, dict[str, Any]]:
    """Queue every input as a ``recorded`` run; returns run id -> input."""
    responses = asyncio.run(_submit_all(stack.url, inputs, stream))
    for response in responses:
        assert response.status_code == 202, response.text
    return {r.json()["run_id"]: value for r, value in zip(responses, inputs, strict=True)}


def records(stack: Stack, run_ids: list[str]) -> list[dict[str, Any]]:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        return [client.get(f"/v1/runs/{run_id}").json() for run_id in run_ids]


def wait_final(stack: Stack, run_ids: list[str], timeout: float = 120) -> list[dict[str, Any]]:
    latest: list[dict[str, Any]] = []

    def done() -> list[dict[str, Any]] | None:
        try:
            latest[:] = records(stack, run_ids)
        except httpx.HTTPError:
            return None  # the gateway restarting
        return latest if all(r.get("state") in FINAL for r in latest) else None

    try:
        result: list[dict[str, Any]] = wait_until(done, timeout, interval=0.5)
    except TimeoutError:
        pending = [r for r in latest if r.get("state") not in FINAL]
        raise TimeoutError(f"{len(pending)} runs did not end, e.g. {pending[:3]}") from None
    return result


def wait_running(stack: Stack, run_id: str, timeout: float = 30) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        (record,) = records(stack, [run_id])
        return record if record["state"] == "running" else None

    result: dict[str, Any] = wait_until(running, timeout)
    return result


def worker_of(stack: Stack, record: dict[str, Any]) -> Process:
    pid = int(record["worker"].split(":")[1])
    (worker,) = [w for w in stack.workers if w.pid == pid]
    return worker


@contextmanager
def supervised(stack: Stack, **worker_settings: Any) -> Iterator[list[int]]:
    """Restart any worker that dies, as Kubernetes restarts a crashed container. Yields the
    list of restarts' times, filled as they happen."""
    restarts: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            for index, worker in enumerate(list(stack.workers)):
                if not worker.alive():
                    stack.workers[index] = stack.add_worker(**worker_settings)
                    stack.workers.pop()  # add_worker appended it; keep the slot's order
                    restarts.append(int(time.time()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield restarts
    finally:
        stop.set()
        watcher.join(5)
