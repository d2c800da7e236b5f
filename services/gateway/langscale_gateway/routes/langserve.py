"""LangServe-compatible routes, so ``RemoteRunnable("http://host/<pipeline>")`` works as is.

Same request and response bodies as LangServe's ``add_routes``: invoke answers
``{"output", "metadata": {"run_id", "feedback_tokens"}}``, batch answers
``{"output": [...], "metadata": {"run_ids", "responses"}}``. Each input is one queued run.
As LangServe, invoke and batch wait until their runs end or the client leaves; a gateway
gives up only after ``LANGSCALE_MAX_INVOKE_TIMEOUT`` (or a lower ``?timeout=``), with a
504 error naming the runs (RemoteRunnable raises it with the body in its message), and
the runs go on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from langscale.contract import RunRecord, RunState, StreamMode
from langscale_gateway.auth import Principal
from langscale_gateway.deps import Caller, Service
from langscale_gateway.errors import ApiError, error_response
from langscale_gateway.openapi import BODY_ERRORS, errors
from langscale_gateway.routes.runs import status_url
from langscale_gateway.service import RunService
from langscale_gateway.streaming import StreamSession, langserve_events, until_disconnected

router = APIRouter(tags=["langserve"], responses=errors(404, 422, 503))
# What invoke and batch may answer besides 200: a bad body, a full queue, the run's failure
# (500) or cancellation (409), the gateway giving up waiting (504).
WAIT_ERRORS = errors(*BODY_ERRORS, 409, 429, 500, 504)

TimeoutParam = Query(
    None,
    description="Seconds to wait at most for the runs to end (default and upper bound: "
    "LANGSCALE_MAX_INVOKE_TIMEOUT); past it the answer is 504 run_timeout naming the runs, "
    "which go on.",
)
OnDisconnectParam = Query(
    None,
    description="cancel: a client that goes away cancels its runs; continue: they run on. "
    "Default: LANGSCALE_DISCONNECT_POLICY.",
)
MultitaskParam = Query(
    None,
    description="With a thread (config.configurable.session_id): enqueue (default), reject, "
    "interrupt or rollback the thread's runs that have not ended.",
)
LEFT_REASON = "the client disconnected"


class InvokeRequest(BaseModel):
    input: Any = Field(description="The input to the pipeline.")
    config: dict[str, Any] = Field(default_factory=dict)


class InvokeResponse(BaseModel):
    output: Any
    metadata: dict[str, Any] = Field(description="{run_id, feedback_tokens}")


class BatchResponse(BaseModel):
    output: list[Any]
    metadata: dict[str, Any] = Field(description="{run_ids, responses}")


class BatchRequest(BaseModel):
    inputs: list[Any] = Field(description="The inputs; each becomes one run.")
    config: dict[str, Any] | list[dict[str, Any]] = Field(default_factory=dict)


_FILTERS = ("names", "types", "tags")


class StreamLogRequest(InvokeRequest):
    """LangServe's /stream_log body: the input and config, and astream_log's filters."""

    diff: bool = Field(True, description="Only diff=true (patches) is served, as LangServe.")
    include_names: list[str] | None = None
    include_types: list[str] | None = None
    include_tags: list[str] | None = None
    exclude_names: list[str] | None = None
    exclude_types: list[str] | None = None
    exclude_tags: list[str] | None = None

    def options(self) -> dict[str, list[str]]:
        names = [f"{kind}_{what}" for kind in ("include", "exclude") for what in _FILTERS]
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def _unfinished(request: Request, records: list[RunRecord], waited: float) -> JSONResponse:
    """The gateway gives up waiting: an error (RemoteRunnable raises it, this body in its
    message) that names every run still going, and where to follow it."""
    going = [r for r in records if not r.state.is_final]
    first = going[0].run_id
    named = ", ".join(r.run_id for r in going)
    return error_response(
        504,
        "run_timeout",
        f"run {named} did not end within {waited:g} s; it goes on: poll "
        f"{status_url(request, first)}?wait=30 (or follow its /stream)",
        {"Location": status_url(request, first)},
        run_ids=[r.run_id for r in records],
        pending=[r.run_id for r in going],
    )


def _failure(record: RunRecord) -> JSONResponse:
    error = record.error
    if record.state is RunState.CANCELLED:
        return error_response(409, "run_cancelled", "the run was cancelled", run_id=record.run_id)
    return error_response(
        500,
        error.type if error else "run_failed",
        error.message if error else "the run failed",
        run_id=record.run_id,
    )


async def _wait_for_client(
    service: RunService,
    request: Request,
    run_ids: list[str],
    timeout: float,
    cancel_on_leave: bool,
) -> list[RunRecord] | None:
    """Wait for the runs just queued; None if the client left first (then cancel them if
    asked). A gateway that stops is not a client that leaves: nothing is cancelled then."""
    wake = asyncio.Event()
    left = False

    async def watch() -> None:
        nonlocal left
        await until_disconnected(request)
        left = True
        wake.set()

    watcher = asyncio.create_task(watch())
    try:
        records = await service.wait(run_ids, timeout, queued=True, wake=wake, give_up=lambda: left)
    finally:
        watcher.cancel()
    if left:
        if cancel_on_leave:
            await service.cancel_quietly(run_ids, LEFT_REASON)
        return None
    return records


@router.post(
    "/{pipeline}/invoke",
    summary="Run a pipeline and wait for its output",
    response_model=InvokeResponse,
    responses=WAIT_ERRORS,
)
async def invoke(
    pipeline: str,
    body: InvokeRequest,
    request: Request,
    service: Service,
    caller: Caller,
    timeout: float | None = TimeoutParam,
    on_disconnect: str | None = OnDisconnectParam,
    multitask_strategy: str | None = MultitaskParam,
) -> Response:
    wait_for = service.invoke_timeout(timeout)
    cancel_on_leave = service.leaves_cancel(on_disconnect)
    run_ids = (
        await service.submit(
            caller, pipeline, [body.input], [body.config], multitask_strategy=multitask_strategy
        )
    ).run_ids
    records = await _wait_for_client(service, request, run_ids, wait_for, cancel_on_leave)
    if records is None:
        return Response(status_code=499)  # nobody is listening any more
    (record,) = records
    if not record.state.is_final:
        return _unfinished(request, [record], wait_for)
    if record.state is not RunState.SUCCEEDED:
        return _failure(record)
    return JSONResponse(
        {"output": record.output, "metadata": {"run_id": record.run_id, "feedback_tokens": []}}
    )


@router.post(
    "/{pipeline}/batch",
    summary="Run a pipeline on many inputs and wait for all",
    response_model=BatchResponse,
    responses=WAIT_ERRORS,
)
async def batch(
    pipeline: str,
    body: BatchRequest,
    request: Request,
    service: Service,
    caller: Caller,
    timeout: float | None = TimeoutParam,
    on_disconnect: str | None = OnDisconnectParam,
    multitask_strategy: str | None = MultitaskParam,
) -> Response:
    wait_for = service.invoke_timeout(timeout)
    cancel_on_leave = service.leaves_cancel(on_disconnect)
    count = len(body.inputs)
    if count > service.settings.max_batch_size:
        raise ApiError(
            422,
            "batch_too_large",
            f"{count} inputs; at most {service.settings.max_batch_size} per batch",
        )
    if not body.inputs:
        return JSONResponse({"output": [], "metadata": {"run_ids": [], "responses": []}})
    if isinstance(body.config, list):
        if len(body.config) != count:
            raise ApiError(
                422,
                "invalid_request",
                f"config is a list of {len(body.config)} items for {count} inputs",
            )
        configs = body.config
    else:
        configs = [body.config] * count
    paths = [f"$.inputs[{i}]" for i in range(count)]
    submitted = await service.submit(
        caller,
        pipeline,
        body.inputs,
        configs,
        input_paths=paths,
        multitask_strategy=multitask_strategy,
    )
    run_ids = submitted.run_ids
    records = await _wait_for_client(service, request, run_ids, wait_for, cancel_on_leave)
    if records is None:
        return Response(status_code=499)
    if not all(r.state.is_final for r in records):
        return _unfinished(request, records, wait_for)
    for record in records:
        if record.state is not RunState.SUCCEEDED:
            return _failure(record)
    return JSONResponse(
        {
            "output": [r.output for r in records],
            "metadata": {
                "run_ids": run_ids,
                "responses": [{"run_id": r, "feedback_tokens": []} for r in run_ids],
            },
        }
    )


@router.get("/{pipeline}/input_schema", summary="JSON schema of the pipeline's input")
async def input_schema(pipeline: str, service: Service, caller: Caller) -> dict[str, Any]:
    return (await service.catalog.get(pipeline)).definition.input_schema


@router.get("/{pipeline}/output_schema", summary="JSON schema of the pipeline's output")
async def output_schema(pipeline: str, service: Service, caller: Caller) -> dict[str, Any]:
    return (await service.catalog.get(pipeline)).definition.output_schema


async def _stream(
    pipeline: str,
    body: InvokeRequest,
    service: RunService,
    caller: Principal,
    on_disconnect: str | None,
    mode: StreamMode,
    multitask_strategy: str | None = None,
) -> EventSourceResponse:
    cancel_on_leave = service.leaves_cancel(on_disconnect)
    options = body.options() if isinstance(body, StreamLogRequest) else None
    submitted = await service.submit(
        caller,
        pipeline,
        [body.input],
        [body.config],
        stream=mode,
        stream_options=options,
        multitask_strategy=multitask_strategy,
    )
    (run_id,) = submitted.run_ids

    async def client_left() -> None:
        # Cancels nothing once the run has ended (the usual way a stream closes).
        if cancel_on_leave:
            await service.cancel_quietly([run_id], LEFT_REASON)

    session = StreamSession(service.drain)
    return session.response(
        langserve_events(
            service.runs,
            service.hub,
            run_id,
            session,
            client_left,
            # LangServe's stream_log sends no metadata event; its client warns about one.
            metadata=mode is not StreamMode.LOG,
        ),
        headers={"X-Langscale-Run-Id": run_id},
    )


@router.post(
    "/{pipeline}/stream",
    summary="Run a pipeline and stream its output chunks (LangServe format)",
    response_class=EventSourceResponse,
    responses=errors(*BODY_ERRORS, 409, 429),
)
async def stream(
    pipeline: str,
    body: InvokeRequest,
    service: Service,
    caller: Caller,
    on_disconnect: str | None = OnDisconnectParam,
    multitask_strategy: str | None = MultitaskParam,
) -> EventSourceResponse:
    return await _stream(
        pipeline, body, service, caller, on_disconnect, StreamMode.CHUNKS, multitask_strategy
    )


@router.post(
    "/{pipeline}/stream_events",
    summary="Run a pipeline and stream its astream_events (LangServe format)",
    response_class=EventSourceResponse,
    responses=errors(*BODY_ERRORS, 409, 429),
)
async def stream_events(
    pipeline: str,
    body: InvokeRequest,
    service: Service,
    caller: Caller,
    on_disconnect: str | None = OnDisconnectParam,
    multitask_strategy: str | None = MultitaskParam,
) -> EventSourceResponse:
    return await _stream(
        pipeline, body, service, caller, on_disconnect, StreamMode.EVENTS, multitask_strategy
    )


@router.post(
    "/{pipeline}/stream_log",
    summary="Run a pipeline and stream its astream_log patches (LangServe format)",
    response_class=EventSourceResponse,
    responses=errors(*BODY_ERRORS, 409, 429),
)
async def stream_log(
    pipeline: str,
    body: StreamLogRequest,
    service: Service,
    caller: Caller,
    on_disconnect: str | None = OnDisconnectParam,
    multitask_strategy: str | None = MultitaskParam,
) -> EventSourceResponse:
    if not body.diff:
        raise ApiError(422, "invalid_request", "only diff=true is served (as LangServe)")
    return await _stream(
        pipeline, body, service, caller, on_disconnect, StreamMode.LOG, multitask_strategy
    )


@router.post("/stream", include_in_schema=False)
@router.post("/stream_events", include_in_schema=False)
@router.post("/stream_log", include_in_schema=False)
async def stream_without_pipeline() -> None:
    """RemoteRunnable("…/chat?timeout=10") streams to /stream: it resolves the method against
    the URL's path, dropping the query string and the pipeline with it (invoke and batch are
    routed by runnable_url)."""
    raise ApiError(
        404,
        "pipeline_not_in_path",
        "no pipeline in the path: a RemoteRunnable whose URL has a query string streams to "
        "/stream, without its pipeline; give it the pipeline's URL alone (http://host/chat): "
        "the gateway waits as long as a run takes, up to LANGSCALE_MAX_INVOKE_TIMEOUT",
    )
