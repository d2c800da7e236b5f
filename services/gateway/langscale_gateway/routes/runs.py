"""The async runs API: ``POST /v1/runs``, ``GET /v1/runs/{run_id}``."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from langscale.contract import RunAccepted, RunPage, RunRecord, RunState, StreamMode
from langscale_gateway.deps import Caller, Service
from langscale_gateway.errors import ApiError
from langscale_gateway.openapi import BODY_ERRORS, errors
from langscale_gateway.service import encode_cursor
from langscale_gateway.streaming import StreamSession, v1_events

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=errors(503))

# An event's id is its number in the run's stream.
_EVENT_ID = re.compile(r"\d{1,18}")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(description="Name of a published pipeline.")
    input: Any = Field(description="Input, validated against the pipeline's input schema.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="RunnableConfig keys passed to the pipeline: configurable, tags, "
        "metadata, run_name, max_concurrency, recursion_limit.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Stored with the run and returned as is."
    )
    webhook: str | None = Field(
        None,
        description="URL POSTed once when the run ends (Standard Webhooks, signed with the "
        "tenant's secret), retried until delivered; default: the tenant's "
        "(LANGSCALE_WEBHOOK_DEFAULT_URLS). Private, loopback and link-local destinations "
        "are refused (422) unless allowed.",
    )
    stream: bool | StreamMode = Field(
        False,
        description='true (or "chunks"): publish every output chunk (astream) to the '
        "run's stream; \"events\": every astream_events event. Every run's stream carries "
        "its state changes and final output.",
    )

    thread_id: str | None = Field(
        None,
        description="The thread (conversation) the run belongs to: runs of one thread never "
        "execute at the same time. LangServe clients may name it as "
        "config.configurable.session_id instead.",
    )
    multitask_strategy: str | None = Field(
        None,
        description="What this run does to its thread's runs that have not ended: enqueue "
        "(default: wait in order), reject (409), interrupt (cancel them, keep what they wrote "
        "to the history), rollback (cancel them and drop what they wrote).",
    )

    def stream_mode(self) -> StreamMode:
        if isinstance(self.stream, StreamMode):
            return self.stream
        return StreamMode.CHUNKS if self.stream else StreamMode.OFF


def status_url(request: Request, run_id: str) -> str:
    # Formatted, not url_for: url_for walks every route and costs more than the enqueue.
    return f"{request.scope.get('root_path', '')}/v1/runs/{run_id}"


@router.post(
    "",
    status_code=202,
    response_model=RunAccepted,
    summary="Queue a run",
    responses=errors(*BODY_ERRORS, 404, 409, 429),
)
async def create_run(
    body: RunRequest,
    request: Request,
    service: Service,
    caller: Caller,
    idempotency_key: str | None = Header(
        None,
        description="The same key and body within the idempotency window return the same "
        "run; the same key with another body is 409.",
    ),
) -> JSONResponse:
    submitted = await service.submit(
        caller,
        body.pipeline,
        [body.input],
        [body.config],
        body.metadata,
        stream=body.stream_mode(),
        idempotency_key=idempotency_key,
        thread_id=body.thread_id,
        multitask_strategy=body.multitask_strategy,
        webhook=body.webhook,
    )
    (run_id,) = submitted.run_ids
    url = status_url(request, run_id)
    headers = {"Location": url}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    accepted: dict[str, Any] = {"run_id": run_id, "state": submitted.state.value, "status_url": url}
    if submitted.thread_id is not None:
        accepted |= {
            "thread_id": submitted.thread_id,
            "cancelled_run_ids": list(submitted.cancelled),
        }
    return JSONResponse(accepted, status_code=202, headers=headers)


@router.get(
    "",
    response_model=RunPage,
    summary="Runs, newest first, with filters",
    responses=errors(403, 422),
)
async def list_runs(
    service: Service,
    caller: Caller,
    state: list[RunState] = Query(
        [], description="Only runs in these states (repeat the parameter for several)."
    ),
    pipeline: str | None = Query(None, description="Only runs of this pipeline."),
    metadata: list[str] = Query(
        [],
        description="key=value: only runs whose metadata has this value at this key (a "
        "string as is, a number or boolean as JSON); repeatable. Keys named in "
        "LANGSCALE_RUNS_INDEXED_METADATA are read from their own index.",
    ),
    created_after: float | None = Query(
        None, ge=0, le=1e12, description="Unix time, seconds (inclusive)."
    ),
    created_before: float | None = Query(
        None, ge=0, le=1e12, description="Unix time, seconds (inclusive)."
    ),
    tenant: str | None = Query(None, description="Admins: one tenant's runs (default: all)."),
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=100),
) -> JSONResponse:
    """The caller's runs (an admin key's: every tenant's), newest first. Each page reads the
    narrowest index (the tenant's, its pipeline's, or an indexed metadata value's) in order
    and applies the other filters to at most 10 x limit runs per partition: a page can hold
    fewer than `limit` runs and still have a next_cursor."""
    page = await service.list_runs(
        caller,
        limit=limit,
        states=state,
        pipeline=pipeline,
        metadata=metadata,
        created_after=created_after,
        created_before=created_before,
        tenant=tenant,
        cursor=cursor,
    )
    return JSONResponse(
        {
            "runs": [r.model_dump(mode="json") for r in page.records],
            "next_cursor": encode_cursor(page.cursor) if page.cursor else None,
        }
    )


@router.get(
    "/{run_id}",
    response_model=RunRecord,
    summary="State, output or error of a run",
    responses=errors(404, 422),
)
async def get_run(
    run_id: str,
    service: Service,
    caller: Caller,
    wait: float = Query(
        0,
        ge=0,
        description="Long-poll: answer once the run has ended, or after this many seconds "
        "(at most LANGSCALE_MAX_INVOKE_TIMEOUT) with its state then.",
    ),
) -> JSONResponse:
    if wait > service.settings.max_invoke_timeout:
        raise ApiError(
            422,
            "invalid_wait",
            f"wait must be <= {service.settings.max_invoke_timeout:g} seconds",
            max_wait=service.settings.max_invoke_timeout,
        )
    record = await service.wait_for(caller, run_id, wait)
    return JSONResponse(record.model_dump(mode="json"))


@router.delete(
    "/{run_id}",
    status_code=204,
    summary="Forget an ended run now",
    responses=errors(404, 409, 422),
)
async def delete_run(run_id: str, service: Service, caller: Caller) -> Response:
    """Delete an ended run's result, stream and listing entries before their TTL, and a
    thread run's turns in its thread's history (409 while it is queued or running: cancel
    it first)."""
    await service.forget(caller, run_id)
    return Response(status_code=204)


@router.get(
    "/{run_id}/stream",
    summary="Server-Sent Events of a run: state changes, chunks, retries, the end",
    response_class=EventSourceResponse,
    responses=errors(404, 422),
)
async def stream_run(
    run_id: str,
    service: Service,
    caller: Caller,
    last_event_id: str | None = Header(
        None, description="Resume after this event (the number sent as each event's id)."
    ),
) -> EventSourceResponse:
    await service.get(caller, run_id)
    after = last_event_id or "0"
    if not _EVENT_ID.fullmatch(after):
        raise ApiError(
            422, "invalid_last_event_id", "Last-Event-ID must be an event id of this stream"
        )
    session = StreamSession(service.drain)
    return session.response(v1_events(service.runs, service.hub, run_id, int(after), session))


@router.post(
    "/{run_id}/cancel",
    response_model=RunRecord,
    summary="Cancel a queued or running run",
    responses=errors(404, 409, 422),
)
async def cancel_run(run_id: str, service: Service, caller: Caller) -> JSONResponse:
    record = await service.cancel(caller, run_id)
    return JSONResponse(record.model_dump(mode="json"))


@router.post(
    "/{run_id}/requeue",
    response_model=RunRecord,
    status_code=202,
    summary="Put a failed run back on the queue (admin)",
    responses=errors(403, 404, 409, 422),
)
async def requeue_run(run_id: str, service: Service, caller: Caller) -> JSONResponse:
    record = await service.requeue_failed(caller, run_id)
    return JSONResponse(record.model_dump(mode="json"), status_code=202)
