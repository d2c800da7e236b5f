"""Relaying a run's Redis Stream as Server-Sent Events, and noticing clients that leave.

The relay reads Redis at the client's pace (``XREAD COUNT`` after each batch is sent), so
a slow client never makes the gateway buffer a run's output in memory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import anyio
from fastapi import Request
from sse_starlette import ServerSentEvent

from langscale.contract import EventType, RunState
from langscale.runs import RunStore

T = TypeVar("T")

BLOCK_MS = 5_000


async def run_events(
    runs: RunStore, run_id: str, after: str = "0"
) -> AsyncIterator[tuple[str, EventType, str]]:
    """A run's events after stream id ``after``, up to and including its ``end``."""
    while True:
        events = await runs.read_events(run_id, after, block_ms=BLOCK_MS)
        for event_id, event_type, data in events:
            yield event_id, event_type, data
            after = event_id
            if event_type is EventType.END:
                return
        if not events and await runs.get(run_id) is None:
            return  # expired while we waited


async def v1_events(runs: RunStore, run_id: str, after: str) -> AsyncIterator[ServerSentEvent]:
    """``GET /v1/runs/{id}/stream``: every event, with its stream id as the SSE id."""
    async for event_id, event_type, data in run_events(runs, run_id, after):
        yield ServerSentEvent(data=data, event=event_type.value, id=event_id)


def _langserve_error(status_code: int, message: str) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps({"status_code": status_code, "message": message}), event="error"
    )


async def langserve_events(
    runs: RunStore, run_id: str, on_leave: Any = None
) -> AsyncIterator[ServerSentEvent]:
    """LangServe's ``/stream`` format: ``metadata``, ``data``..., then ``end`` or ``error``.

    A retry after chunks were sent ends the stream with an error rather than letting the
    client glue two attempts' outputs together.
    """
    sent_data = False
    try:
        yield ServerSentEvent(data=json.dumps({"run_id": run_id}), event="metadata")
        async for _, event_type, data in run_events(runs, run_id):
            if event_type is EventType.DATA:
                sent_data = True
                yield ServerSentEvent(data=data, event="data")
            elif event_type is EventType.RETRY and sent_data:
                yield _langserve_error(
                    503,
                    f"run {run_id} was retried after partial output; its output restarted. "
                    f"Follow GET /v1/runs/{run_id}/stream or retry the request.",
                )
                return
            elif event_type is EventType.END:
                end = json.loads(data)
                state = RunState(end["state"])
                if state is RunState.SUCCEEDED:
                    yield ServerSentEvent(event="end")
                else:
                    error = end.get("error") or {}
                    status = 409 if state is RunState.CANCELLED else 500
                    yield _langserve_error(status, error.get("message", state.value))
    finally:
        if on_leave is not None:
            # Runs after a client disconnect too, when anyio has cancelled this scope.
            with anyio.CancelScope(shield=True):
                await on_leave()


async def until_disconnected(request: Request) -> None:
    """Return when the client closes the connection (its body was read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run ``work`` unless the client leaves first: (False, result) or (True, None)."""
    result: list[T] = []
    left = False

    async with anyio.create_task_group() as group:

        async def do_work() -> None:
            result.append(await work)
            group.cancel_scope.cancel()

        async def watch() -> None:
            nonlocal left
            await until_disconnected(request)
            left = True
            group.cancel_scope.cancel()

        group.start_soon(do_work)
        group.start_soon(watch)
    return left, (result[0] if result else None)
