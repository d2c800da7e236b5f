"""Threads: ``GET /v1/threads`` (a tenant's), ``GET``/``DELETE /v1/threads/{thread_id}``
and its chat history."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from langscale.contract import ThreadHistory, ThreadPage, ThreadView
from langscale.lifecycle import is_valid_thread_id
from langscale_gateway.deps import Caller, Service
from langscale_gateway.openapi import errors
from langscale_gateway.service import decode_cursor, encode_cursor
from langscale_gateway.threads import delete_thread, history_view, thread_view, threads_view

router = APIRouter(prefix="/v1/threads", tags=["threads"], responses=errors(404, 422, 503))


@router.get(
    "",
    response_model=ThreadPage,
    summary="The caller's threads, newest first",
    responses=errors(422),
)
async def list_threads(
    service: Service,
    caller: Caller,
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=100),
) -> JSONResponse:
    """The caller's tenant's threads, newest created first: each one's state (`busy` while
    it has a run that has not ended), its runs not ended, run and message counts, created
    and updated times. A thread that expired (LANGSCALE_THREAD_TTL) is not listed."""
    position = decode_cursor(cursor, is_valid_thread_id) if cursor else None
    threads, last = await threads_view(service.runs, caller, limit, position)
    return JSONResponse({"threads": threads, "next_cursor": encode_cursor(last) if last else None})


@router.delete(
    "/{thread_id}",
    status_code=204,
    summary="Delete a thread: its history, log and state",
    responses=errors(404, 409, 422),
)
async def remove_thread(thread_id: str, service: Service, caller: Caller) -> Response:
    """Delete a thread's chat history, its log and its state now (409 `thread_busy`, with
    the run's id, while it has a run that has not ended: cancel it or wait). Its runs are
    not deleted: they stay until their own TTL, or `DELETE /v1/runs/{id}`."""
    await delete_thread(service.runs, caller, thread_id)
    return Response(status_code=204)


@router.get(
    "/{thread_id}",
    response_model=ThreadView,
    summary="A thread's state, its waiting runs and its latest runs",
)
async def get_thread(thread_id: str, service: Service, caller: Caller) -> JSONResponse:
    return JSONResponse(await thread_view(service.runs, caller, thread_id))


@router.get(
    "/{thread_id}/history",
    response_model=ThreadHistory,
    summary="A thread's chat messages, oldest first",
)
async def get_history(thread_id: str, service: Service, caller: Caller) -> JSONResponse:
    return JSONResponse(await history_view(service.runs, caller, thread_id))
