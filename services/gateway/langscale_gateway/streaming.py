"""Relaying a run's events as Server-Sent Events, and telling a client that leaves from a
gateway that stops.

The relay reads Redis at the client's pace (``lifecycle.streams.follow``), so a slow client
never makes the gateway buffer a run's output, and it waits for new events on the
process's stream hub rather than on a Redis connection of its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message

from langscale.contract import EventType, RunState
from langscale.lifecycle import RunStore, StreamHub, follow
from langscale_gateway.drain import Drain


class StreamSession:
    """How one SSE response ends: its client left, or the gateway drains."""

    def __init__(self, drain: Drain) -> None:
        self.drain = drain
        self.client_left = False

    async def on_client_close(self, message: Message) -> None:
        self.client_left = True

    def response(
        self, events: AsyncIterator[ServerSentEvent], headers: dict[str, str] | None = None
    ) -> EventSourceResponse:
        return EventSourceResponse(
            events,
            headers=headers,
            client_close_handler_callable=self.on_client_close,
            # sse-starlette would cut streams at once on shutdown: give them the window.
            shutdown_grace_period=self.drain.seconds,
        )


def _reconnect(last_seq: int) -> ServerSentEvent:
    return ServerSentEvent(
        event="reconnect",
        data=json.dumps({"reason": "gateway_shutdown", "last_event_id": str(last_seq)}),
        retry=1000,
    )


async def v1_events(
    runs: RunStore, hub: StreamHub, run_id: str, after: int, session: StreamSession
) -> AsyncIterator[ServerSentEvent]:
    """``GET /v1/runs/{id}/stream``: every event, its number as the SSE id."""
    last, ended = after, False
    async for event in follow(runs, hub, run_id, after, stop=session.drain.expired):
        yield ServerSentEvent(data=event.data, event=event.type.value, id=str(event.seq))
        last, ended = event.seq, event.type is EventType.END
    if not ended and session.drain.expired.is_set():
        yield _reconnect(last)


def _langserve_error(status_code: int, message: str) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps({"status_code": status_code, "message": message}), event="error"
    )


async def langserve_events(
    runs: RunStore,
    hub: StreamHub,
    run_id: str,
    session: StreamSession,
    on_client_left: Callable[[], Awaitable[None]] | None = None,
    metadata: bool = True,
) -> AsyncIterator[ServerSentEvent]:
    """LangServe's ``/stream`` format: ``metadata``, ``data``..., then ``end`` or ``error``
    (``/stream_log``'s has no ``metadata``).

    LangServe's client cannot resume, so whatever would make it miss or repeat output ends
    the stream with an error that names the run (which goes on): a retry after chunks were
    sent, a gap (the reader fell behind what the stream keeps), the gateway draining.
    """
    sent_data = False
    follow_it = f"follow GET /v1/runs/{run_id}/stream for the rest"
    try:
        if metadata:
            yield ServerSentEvent(data=json.dumps({"run_id": run_id}), event="metadata")
        async for event in follow(runs, hub, run_id, stop=session.drain.expired):
            if event.type is EventType.DATA:
                sent_data = True
                yield ServerSentEvent(data=event.data, event="data")
            elif event.type is EventType.RETRY and sent_data:
                yield _langserve_error(
                    503,
                    f"run {run_id} was retried after partial output; its output restarted: "
                    f"{follow_it}, or retry the request",
                )
                return
            elif event.type is EventType.GAP:
                yield _langserve_error(
                    503, f"this stream fell behind run {run_id}'s output; {follow_it}"
                )
                return
            elif event.type is EventType.END:
                end = json.loads(event.data)
                state = RunState(end["state"])
                if state is RunState.SUCCEEDED:
                    yield ServerSentEvent(event="end")
                else:
                    error = end.get("error") or {}
                    status = 409 if state is RunState.CANCELLED else 500
                    yield _langserve_error(status, error.get("message", state.value))
                return
        if session.drain.expired.is_set():
            yield _langserve_error(
                503, f"the gateway is restarting; run {run_id} goes on: {follow_it}"
            )
    finally:
        if on_client_left is not None and session.client_left:
            # Runs after the client's disconnect too, when anyio has cancelled this scope.
            with anyio.CancelScope(shield=True):
                await on_client_left()


async def until_disconnected(request: Request) -> None:
    """Return when the client closes the connection (its body was read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
