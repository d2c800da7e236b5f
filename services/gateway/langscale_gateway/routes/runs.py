"""The async runs API: ``POST /v1/runs``, ``GET /v1/runs/{run_id}``."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from langscale.contract import RunRecord, RunState, StreamMode
from langscale_gateway.deps import Caller, Service
from langscale_gateway.errors import ApiError
from langscale_gateway.streaming import StreamSession, v1_events

router = APIRouter(prefix="/v1/runs", tags=["runs"])

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
    stream: bool | StreamMode = Field(
        False,
        description='true (or "chunks"): publish every output chunk (astream) to the '
        "run's stream; \"events\": every astream_events event. Every run's stream carries "
        "its state changes and final output.",
    )

    def stream_mode(self) -> StreamMode:
        if isinstance(self.stream, StreamMode):
            return self.stream
        return StreamMode.CHUNKS if self.stream else StreamMode.OFF


class RunAccepted(BaseModel):
    run_id: str
    state: RunState
    status_url: str


def status_url(request: Request, run_id: str) -> str:
    # Formatted, not url_for: url_for walks every route and costs more than the enqueue.
    return f"{request.scope.get('root_path', '')}/v1/runs/{run_id}"


@router.post("", status_code=202, response_model=RunAccepted, summary="Queue a run")
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
    )
    (run_id,) = submitted.run_ids
    url = status_url(request, run_id)
    headers = {"Location": url}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(
        {"run_id": run_id, "state": submitted.state.value, "status_url": url},
        status_code=202,
        headers=headers,
    )


@router.get("", summary="Failed runs, newest first (admin)")
async def list_runs(
    service: Service,
    caller: Caller,
    state: RunState = Query(description="Only `failed` is listed."),
    limit: int = Query(100, ge=1, le=1000),
) -> JSONResponse:
    if state is not RunState.FAILED:
        raise ApiError(422, "invalid_request", "only state=failed runs are listed")
    runs = await service.failed_runs(caller, limit)
    return JSONResponse({"runs": [r.model_dump(mode="json") for r in runs]})


@router.get("/{run_id}", response_model=RunRecord, summary="State, output or error of a run")
async def get_run(run_id: str, service: Service, caller: Caller) -> JSONResponse:
    record = await service.get(caller, run_id)
    return JSONResponse(record.model_dump(mode="json"))


@router.get(
    "/{run_id}/stream",
    summary="Server-Sent Events of a run: state changes, chunks, retries, the end",
    response_class=EventSourceResponse,
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


@router.post("/{run_id}/cancel", response_model=RunRecord, summary="Cancel a queued or running run")
async def cancel_run(run_id: str, service: Service, caller: Caller) -> JSONResponse:
    record = await service.cancel(caller, run_id)
    return JSONResponse(record.model_dump(mode="json"))


@router.post(
    "/{run_id}/requeue",
    response_model=RunRecord,
    summary="Put a failed run back on the queue (admin)",
)
async def requeue_run(run_id: str, service: Service, caller: Caller) -> JSONResponse:
    record = await service.requeue_failed(caller, run_id)
    return JSONResponse(record.model_dump(mode="json"), status_code=202)
