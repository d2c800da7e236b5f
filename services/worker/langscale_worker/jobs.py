"""The job every langscale run executes: run one pipeline for one run id."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from arq.worker import Retry
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import add
from langserve.serialization import WellKnownLCSerializer
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from redis.exceptions import RedisError

from langscale import keys, logs, metrics, telemetry
from langscale.contract import (
    CLIENT_CONFIG_KEYS,
    ErrorInfo,
    EventType,
    JobSpec,
    RunState,
    StreamMode,
    now_ms,
)
from langscale.runs import RunStore
from langscale.settings import Settings
from langscale_worker.llm_cache import start_attempt_numbering
from langscale_worker.registry import Pipeline
from langscale_worker.retries import backoff, classify
from langscale_worker.tracing import LangChainTelemetry

logger = logging.getLogger(__name__)

# LangServe's wire format for inputs, outputs and chunks, so RemoteRunnable clients
# round-trip messages and documents exactly as with LangServe.
SERIALIZER = WellKnownLCSerializer()

CTX_RUNTIME = "langscale"
# Field of the run hash holding the span context (traceparent form) of the latest attempt,
# so the next attempt's span links to it.
TRACE_SPAN_FIELD = "trace_span"


@dataclass
class WorkerRuntime:
    """What every job needs, built once per worker process."""

    settings: Settings
    pipelines: dict[str, Pipeline]
    runs: RunStore
    worker_id: str = ""
    # Spans go here; None: the global provider (a no-op unless tracing is set up).
    tracer_provider: trace.TracerProvider | None = None
    # Runs executing in this process, by run id, so a cancel notice can stop them.
    executing: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)

    def cancel(self, run_id: str) -> None:
        """A client cancelled this run: stop it if it runs here (abandoning LLM calls)."""
        task = self.executing.get(run_id)
        if task is not None and not task.done():
            self.cancelled.add(run_id)
            task.cancel()


def run_config(spec: JobSpec, attempt: int = 1) -> RunnableConfig:
    config: dict[str, Any] = {k: v for k, v in spec.config.items() if k in CLIENT_CONFIG_KEYS}
    metadata = dict(config.get("metadata") or {})
    metadata["langscale_run_id"] = spec.run_id
    metadata["langscale_tenant"] = spec.tenant  # shares of the LLM rate limit
    metadata["langscale_pipeline"] = spec.pipeline
    metadata["langscale_attempt"] = attempt  # a first attempt has nothing to replay
    config["metadata"] = metadata
    config["run_id"] = uuid.UUID(spec.run_id)
    return RunnableConfig(**config)  # type: ignore[typeddict-item]


Publish = Callable[[list[tuple[EventType, str]]], Awaitable[None]]


async def _stream_chunks(
    runnable: Runnable, value: Any, config: RunnableConfig, publish: Publish
) -> Any:
    """astream, publishing every chunk; the output is the chunks added up, as invoke's."""
    final: Any = None
    chunks: list[Any] = []
    async for chunk in runnable.astream(value, config=config):
        await publish([(EventType.DATA, SERIALIZER.dumps(chunk).decode())])
        chunks.append(chunk)
    if chunks:
        try:
            final = add(chunks)
        except TypeError:
            final = chunks[-1]
    return final


async def _stream_events(
    runnable: Runnable, value: Any, config: RunnableConfig, publish: Publish
) -> Any:
    """astream_events v2, publishing every event; the output is the root run's output."""
    final: Any = None
    root = str(config["run_id"])
    async for event in runnable.astream_events(value, config=config, version="v2"):
        await publish([(EventType.DATA, SERIALIZER.dumps(event).decode())])
        if event["event"] == "on_chain_end" and event["run_id"] == root:
            final = event["data"].get("output")
    return final


async def execute(
    spec: JobSpec,
    pipeline: Pipeline,
    runs: RunStore,
    attempt: int = 1,
    callbacks: list[Any] | None = None,
) -> Any:
    value = SERIALIZER.loadd(spec.input)
    config = run_config(spec, attempt)
    if callbacks:
        config["callbacks"] = callbacks

    async def publish(events: list[tuple[EventType, str]]) -> None:
        await runs.append(spec.run_id, events)

    if spec.stream is StreamMode.CHUNKS:
        return await _stream_chunks(pipeline.runnable, value, config, publish)
    if spec.stream is StreamMode.EVENTS:
        return await _stream_events(pipeline.runnable, value, config, publish)
    return await pipeline.runnable.ainvoke(value, config=config)


async def run_pipeline(ctx: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """One attempt of a run, under a CONSUMER span continuing the producer's trace."""
    runtime: WorkerRuntime = ctx[CTX_RUNTIME]
    spec = JobSpec.model_validate(job)
    queue = runtime.settings.queue_name
    attributes: dict[str, str | int] = {
        "messaging.system": "arq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": spec.run_id,
        "langscale.run.id": spec.run_id,
        "langscale.pipeline": spec.pipeline,
    }
    run_token = logs.RUN_ID.set(spec.run_id)
    try:
        with telemetry.get_tracer(runtime.tracer_provider).start_as_current_span(
            f"process {queue}",
            context=propagate.extract(spec.trace_context),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            return await _run_pipeline(runtime, spec, span)
    finally:
        logs.RUN_ID.reset(run_token)


async def _link_previous_attempt(runs: RunStore, run_id: str, span: trace.Span) -> None:
    """Record this attempt's span on the run hash; link to the previous attempt's."""
    key = keys.run_key(run_id)
    try:
        async with runs.redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, TRACE_SPAN_FIELD)
            pipe.hset(key, TRACE_SPAN_FIELD, telemetry.format_span_context(span.get_span_context()))
            previous, _ = await pipe.execute()
    except (RedisError, OSError) as error:  # tracing never fails a run
        logger.debug("could not record the attempt's span: %s", error)
        return
    context = telemetry.parse_span_context(previous)
    if context is not None:
        span.add_link(context, {"langscale.link": "previous_attempt"})


async def _run_pipeline(runtime: WorkerRuntime, spec: JobSpec, span: trace.Span) -> dict[str, Any]:
    state, attempt = await runtime.runs.start(spec.run_id, runtime.worker_id)
    if attempt < 0:
        # Delivered after the run ended (cancelled while queued, or a worker died after
        # finishing it): do not run it again.
        span.set_attribute("langscale.run.skipped", True)
        return {"state": state.value, "skipped": True, "release": True}
    queued = max(0, now_ms() - spec.enqueued_at_ms) / 1000
    span.set_attribute("langscale.run.attempt", attempt)
    span.set_attribute("langscale.run.queued_seconds", queued)
    if attempt == 1:  # later attempts' time since enqueue includes earlier attempts
        metrics.RUN_QUEUE_WAIT.labels(spec.pipeline).observe(queued)
    if span.is_recording():
        await _link_previous_attempt(runtime.runs, spec.run_id, span)

    pipeline = runtime.pipelines.get(spec.pipeline)
    if pipeline is None:
        error = ErrorInfo(
            type="pipeline_not_found",
            message=f"no worker pipeline named {spec.pipeline!r}; "
            f"this worker serves {sorted(runtime.pipelines)}",
        )
        return await _end(runtime, spec, RunState.FAILED, error=error)

    timeout = runtime.settings.timeout_for(spec.pipeline)
    if attempt == 1:
        start_attempt_numbering()  # before the task: it inherits this context
    handler = LangChainTelemetry(
        telemetry.get_tracer(runtime.tracer_provider), runtime.settings.trace_content
    )
    task = asyncio.ensure_future(execute(spec, pipeline, runtime.runs, attempt, [handler]))
    runtime.executing[spec.run_id] = task
    started = time.perf_counter()
    metrics.RUNS_IN_FLIGHT.inc()
    try:
        async with asyncio.timeout(timeout) as deadline:
            output = await task
        output_json = SERIALIZER.dumps(output).decode()
    except asyncio.CancelledError:
        if spec.run_id in runtime.cancelled:  # a client cancelled it: the state says so
            metrics.RUNS.labels(spec.pipeline, RunState.CANCELLED.value).inc()
            return {"state": RunState.CANCELLED.value, "release": True}
        # The worker is stopping: back to the queue now (arq re-queues the job itself).
        metrics.RUN_RETRIES.labels(spec.pipeline, "worker_stopping").inc()
        await runtime.runs.requeue(spec.run_id, "worker stopping")
        raise
    except TimeoutError as exc:
        if not deadline.expired():
            return await _fail(runtime, spec, exc)
        error = ErrorInfo(type="timeout", message=f"the run exceeded its timeout of {timeout:g} s")
        return await _end(runtime, spec, RunState.FAILED, error=error)
    except Exception as exc:
        retriable, retry_after = classify(exc)
        settings = runtime.settings
        if retriable and attempt < settings.max_attempts:
            delay = backoff(
                attempt, settings.retry_backoff, settings.retry_backoff_max, retry_after
            )
            metrics.RUN_RETRIES.labels(spec.pipeline, type(exc).__name__).inc()
            await runtime.runs.requeue(spec.run_id, "retry", error=_error_info(exc), retry_in=delay)
            logger.info(
                "run will be retried",
                extra={
                    "run_id": spec.run_id,
                    "attempt": attempt,
                    "retry_in": round(delay, 3),
                    "error_type": type(exc).__name__,
                },
            )
            # requeue() made the job due after the delay: arq must leave its score alone.
            raise Retry() from exc
        return await _fail(runtime, spec, exc)
    finally:
        metrics.RUNS_IN_FLIGHT.dec()
        metrics.RUN_DURATION.labels(spec.pipeline).observe(time.perf_counter() - started)
        runtime.executing.pop(spec.run_id, None)
        runtime.cancelled.discard(spec.run_id)
    return await _end(runtime, spec, RunState.SUCCEEDED, output_json=output_json)


async def _end(
    runtime: WorkerRuntime,
    spec: JobSpec,
    state: RunState,
    *,
    output_json: str = "null",
    error: ErrorInfo | None = None,
) -> dict[str, Any]:
    ended = await runtime.runs.finish(spec.run_id, state, output_json=output_json, error=error)
    if ended:  # the first final write: count each run once
        count_end(spec.pipeline, state, error)
    return {"state": state.value}


def count_end(pipeline: str, state: RunState, error: ErrorInfo | None = None) -> None:
    """Metrics (and the current span's status) of a run that ended."""
    metrics.RUNS.labels(pipeline, state.value).inc()
    if error is not None:
        metrics.RUN_ERRORS.labels(pipeline, error.type).inc()
        span = trace.get_current_span()
        span.set_attribute("error.type", error.type)
        span.set_status(Status(StatusCode.ERROR, error.message[:200]))


async def _fail(runtime: WorkerRuntime, spec: JobSpec, exc: Exception) -> dict[str, Any]:
    logger.warning("run failed", extra={"run_id": spec.run_id, "error_type": type(exc).__name__})
    return await _end(runtime, spec, RunState.FAILED, error=_error_info(exc))


def _error_info(exc: Exception) -> ErrorInfo:
    return ErrorInfo(type=type(exc).__name__, message=str(exc) or type(exc).__name__)
