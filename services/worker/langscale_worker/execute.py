"""One attempt of one run: run its pipeline and say how it ended, as a typed outcome.

:func:`execute` never writes the run's state and never raises for the pipeline's errors:
it returns a :class:`~langscale.lifecycle.Outcome` (succeeded, failed, retry after a delay,
or abandoned because the attempt went stale) and the worker process applies it. Only a
cancellation of its task escapes; the process knows why it cancelled (a client's cancel,
the run taken over, the worker stopping) and picks the outcome itself.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jsonpatch
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import add
from langserve.serialization import WellKnownLCSerializer
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from langscale import logs, metrics, telemetry
from langscale.contract import CLIENT_CONFIG_KEYS, ErrorInfo, EventType, JobSpec, StreamMode
from langscale.lifecycle import (
    Abandoned,
    Claim,
    Failed,
    Outcome,
    Retry,
    StaleAttempt,
    Succeeded,
)
from langscale.settings import Settings
from langscale_worker.context import THREAD_KEY, attempt_metadata, root_run_id
from langscale_worker.history import PartialAnswer, StreamingPartialAnswer, partial_message
from langscale_worker.llm_cache import start_attempt_numbering
from langscale_worker.registry import Pipeline
from langscale_worker.retries import backoff, classify
from langscale_worker.tracing import LangChainTelemetry

logger = logging.getLogger(__name__)

# LangServe's wire format for inputs, outputs and chunks, so RemoteRunnable clients
# round-trip messages and documents exactly as with LangServe.
SERIALIZER = WellKnownLCSerializer()

# Writes events to a run's stream as the attempt (run id, fence token) — through the
# process's batched outbox; raises StaleAttempt when refused.
Publish = Callable[[str, str, list[tuple[EventType, str]]], Awaitable[None]]
# Records the attempt's span on the run; returns the previous attempt's span context.
LinkTrace = Callable[[Claim, str], Awaitable[str | None]]
# An attempt of a thread's run was stopped: (claim, thread id, its partial answer as a
# history entry, None if it has none), for the history if an interrupt stopped it.
SavePartial = Callable[[Claim, str, str | None], Awaitable[None]]


@dataclass
class Runtime:
    """What every attempt needs, built once per worker process."""

    settings: Settings
    pipelines: dict[str, Pipeline]
    publish: Publish
    link_trace: LinkTrace
    # Spans go here; None: the global provider (a no-op unless tracing is set up).
    tracer_provider: trace.TracerProvider | None = None
    save_partial: SavePartial | None = None


def run_config(spec: JobSpec, claim: Claim, max_concurrency: int) -> RunnableConfig:
    config: dict[str, Any] = {k: v for k, v in spec.config.items() if k in CLIENT_CONFIG_KEYS}
    config["metadata"] = {
        **(config.get("metadata") or {}),
        **attempt_metadata(spec.run_id, claim.fence, spec.tenant, spec.pipeline, claim.attempt),
    }
    configurable = config.get("configurable")
    thread = configurable.get("session_id") if isinstance(configurable, dict) else None
    if thread is not None:
        config["metadata"][THREAD_KEY] = thread
    config["run_id"] = root_run_id(spec.run_id, claim.attempt)
    # A run's fan-out is bounded: a client may lower the bound, never raise it.
    requested = config.get("max_concurrency")
    config["max_concurrency"] = (
        min(requested, max_concurrency)
        if isinstance(requested, int) and requested > 0
        else max_concurrency
    )
    return RunnableConfig(**config)  # type: ignore[typeddict-item]


async def execute(claim: Claim, runtime: Runtime) -> Outcome:
    """One attempt under a CONSUMER span continuing the producer's trace."""
    spec = claim.job
    attributes: dict[str, str | int | float | bool] = {
        **telemetry.messaging_attributes("process", claim.pipeline, spec.run_id),
        "langscale.run.attempt": claim.attempt,
        "langscale.run.queued_seconds": claim.queued_seconds,
    }
    if claim.isolated:
        attributes["langscale.run.isolated"] = True
    run_token = logs.RUN_ID.set(spec.run_id)
    try:
        with telemetry.get_tracer(runtime.tracer_provider).start_as_current_span(
            f"process {claim.pipeline}",
            context=propagate.extract(spec.trace_context),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            outcome = await _attempt(claim, runtime, span)
            if isinstance(outcome, Failed | Retry):  # the attempt failed, retried or not
                span.set_attribute("error.type", outcome.error.type)
                span.set_status(Status(StatusCode.ERROR, outcome.error.message[:200]))
            return outcome
    finally:
        logs.RUN_ID.reset(run_token)


async def _attempt(claim: Claim, runtime: Runtime, span: trace.Span) -> Outcome:
    spec = claim.job
    settings = runtime.settings
    if claim.attempt == 1:  # later attempts' time since enqueue includes earlier attempts
        metrics.RUN_QUEUE_WAIT.labels(spec.pipeline).observe(claim.queued_seconds)
    if span.is_recording():
        previous = await runtime.link_trace(
            claim, telemetry.format_span_context(span.get_span_context())
        )
        context = telemetry.parse_span_context(previous)
        if context is not None:
            span.add_link(context, {"langscale.link": "previous_attempt"})

    pipeline = runtime.pipelines.get(spec.pipeline)
    if pipeline is None:  # workers claim only what they serve: a bug if it happens
        return Failed(
            ErrorInfo(type="pipeline_not_found", message=f"no pipeline {spec.pipeline!r} here")
        )
    timeout = settings.timeout_for(spec.pipeline)
    if claim.attempt == 1:
        start_attempt_numbering()
    handler = LangChainTelemetry(
        telemetry.get_tracer(runtime.tracer_provider), settings.trace_content
    )
    config = run_config(spec, claim, settings.run_max_concurrency)
    thread = config["metadata"].get(THREAD_KEY)
    partial: PartialAnswer | None = None
    if thread and runtime.save_partial is not None:
        # what the model answered so far, for the history if an interrupt stops it
        invoked = spec.stream is StreamMode.OFF  # streamed runs' models stream anyway
        partial = StreamingPartialAnswer() if invoked else PartialAnswer()
    config["callbacks"] = [handler, partial] if partial else [handler]
    started = time.perf_counter()
    metrics.RUNS_IN_FLIGHT.inc()
    try:
        async with asyncio.timeout(timeout) as deadline:
            output = await _run(pipeline.runnable, spec, config, claim, runtime.publish)
        return Succeeded(SERIALIZER.dumps(output).decode())
    except (StaleAttempt, asyncio.CancelledError) as stopped:
        # Stopped (its write refused, or its task cancelled): an interrupt keeps its answer.
        if partial is not None and runtime.save_partial is not None:
            answer = partial.text() if pipeline.definition().needs_thread else ""
            await runtime.save_partial(claim, str(thread), partial_message(answer))
        if isinstance(stopped, StaleAttempt):
            return Abandoned("stale")
        raise
    except TimeoutError as exc:
        if deadline.expired():
            message = f"the run exceeded its timeout of {timeout:g} s"
            return Failed(ErrorInfo(type="timeout", message=message))
        return failure(exc, claim, settings)
    except Exception as exc:
        return failure(exc, claim, settings)
    finally:
        metrics.RUNS_IN_FLIGHT.dec()
        metrics.RUN_DURATION.labels(spec.pipeline).observe(time.perf_counter() - started)


async def _run(
    runnable: Runnable, spec: JobSpec, config: RunnableConfig, claim: Claim, publish: Publish
) -> Any:
    value = SERIALIZER.loadd(spec.input)
    if spec.stream is StreamMode.CHUNKS:
        chunks: list[Any] = []
        async for chunk in runnable.astream(value, config=config):
            await publish(
                claim.run_id, claim.fence, [(EventType.DATA, SERIALIZER.dumps(chunk).decode())]
            )
            chunks.append(chunk)
        if not chunks:
            return None
        try:  # the output is the chunks added up, as invoke's would be
            return add(chunks)
        except TypeError:
            return chunks[-1]
    if spec.stream is StreamMode.EVENTS:
        final: Any = None
        root = str(config["run_id"])
        async for event in runnable.astream_events(value, config=config, version="v2"):
            await publish(
                claim.run_id, claim.fence, [(EventType.DATA, SERIALIZER.dumps(event).decode())]
            )
            if event["event"] == "on_chain_end" and event["run_id"] == root:
                final = event["data"].get("output")
        return final
    if spec.stream is StreamMode.LOG:
        ops: list[dict[str, Any]] = []
        options: dict[str, Any] = dict(spec.stream_options)
        async for patch in runnable.astream_log(value, config=config, diff=True, **options):
            data = SERIALIZER.dumps({"ops": patch.ops}).decode()
            await publish(claim.run_id, claim.fence, [(EventType.DATA, data)])
            ops.extend(patch.ops)
        # The run's output is the log's final_output, as the patches build it up.
        state = jsonpatch.apply_patch(None, copy.deepcopy(ops)) if ops else {}
        return (state or {}).get("final_output")
    return await runnable.ainvoke(value, config=config)


def failure(exc: BaseException, claim: Claim, settings: Settings) -> Outcome:
    """A retry (a retriable error, attempts left) or the run's failure. Never raises: an
    error while reading the error must not turn a retriable failure into a crash."""
    error = ErrorInfo(type=type(exc).__name__, message=str(exc)[:2000] or type(exc).__name__)
    try:
        retriable, retry_after = classify(exc)
    except Exception:  # a provider error too odd to read: retry it (attempts are bounded)
        logger.exception("could not classify an error; treating it as retriable")
        retriable, retry_after = True, None
    if retriable and claim.attempt < settings.max_attempts:
        delay = backoff(
            claim.attempt, settings.retry_backoff, settings.retry_backoff_max, retry_after
        )
        metrics.RUN_RETRIES.labels(claim.pipeline, error.type).inc()
        logger.info(
            "run will be retried",
            extra={"attempt": claim.attempt, "retry_in": round(delay, 3), "error_type": error.type},
        )
        return Retry(error, delay)
    logger.warning("run failed", extra={"error_type": error.type})
    return Failed(error)
