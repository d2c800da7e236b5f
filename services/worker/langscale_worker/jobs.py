"""The job every langscale run executes: run one pipeline for one run id."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from arq.worker import Retry
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.utils import add
from langserve.serialization import WellKnownLCSerializer

from langscale.contract import (
    CLIENT_CONFIG_KEYS,
    ErrorInfo,
    EventType,
    JobSpec,
    RunState,
    StreamMode,
)
from langscale.runs import RunStore
from langscale.settings import Settings
from langscale_worker.registry import Pipeline
from langscale_worker.retries import backoff, classify

logger = logging.getLogger(__name__)

# LangServe's wire format for inputs, outputs and chunks, so RemoteRunnable clients
# round-trip messages and documents exactly as with LangServe.
SERIALIZER = WellKnownLCSerializer()

CTX_RUNTIME = "langscale"


@dataclass
class WorkerRuntime:
    """What every job needs, built once per worker process."""

    settings: Settings
    pipelines: dict[str, Pipeline]
    runs: RunStore
    worker_id: str = ""
    # Runs executing in this process, by run id, so a cancel notice can stop them.
    executing: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)

    def cancel(self, run_id: str) -> None:
        """A client cancelled this run: stop it if it runs here (abandoning LLM calls)."""
        task = self.executing.get(run_id)
        if task is not None and not task.done():
            self.cancelled.add(run_id)
            task.cancel()


def run_config(spec: JobSpec) -> RunnableConfig:
    config: dict[str, Any] = {k: v for k, v in spec.config.items() if k in CLIENT_CONFIG_KEYS}
    metadata = dict(config.get("metadata") or {})
    metadata["langscale_run_id"] = spec.run_id
    metadata["langscale_tenant"] = spec.tenant  # shares of the LLM rate limit
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


async def execute(spec: JobSpec, pipeline: Pipeline, runs: RunStore) -> Any:
    value = SERIALIZER.loadd(spec.input)
    config = run_config(spec)

    async def publish(events: list[tuple[EventType, str]]) -> None:
        await runs.append(spec.run_id, events)

    if spec.stream is StreamMode.CHUNKS:
        return await _stream_chunks(pipeline.runnable, value, config, publish)
    if spec.stream is StreamMode.EVENTS:
        return await _stream_events(pipeline.runnable, value, config, publish)
    return await pipeline.runnable.ainvoke(value, config=config)


async def run_pipeline(ctx: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    runtime: WorkerRuntime = ctx[CTX_RUNTIME]
    spec = JobSpec.model_validate(job)
    state, attempt = await runtime.runs.start(spec.run_id, runtime.worker_id)
    if attempt < 0:
        # Delivered after the run ended (cancelled while queued, or a worker died after
        # finishing it): do not run it again.
        return {"state": state.value, "skipped": True}

    pipeline = runtime.pipelines.get(spec.pipeline)
    if pipeline is None:
        error = ErrorInfo(
            type="pipeline_not_found",
            message=f"no worker pipeline named {spec.pipeline!r}; "
            f"this worker serves {sorted(runtime.pipelines)}",
        )
        return await _end(runtime, spec, RunState.FAILED, error=error)

    timeout = runtime.settings.timeout_for(spec.pipeline)
    task = asyncio.ensure_future(execute(spec, pipeline, runtime.runs))
    runtime.executing[spec.run_id] = task
    try:
        async with asyncio.timeout(timeout) as deadline:
            output = await task
        output_json = SERIALIZER.dumps(output).decode()
    except asyncio.CancelledError:
        if spec.run_id in runtime.cancelled:  # a client cancelled it: the state says so
            return {"state": RunState.CANCELLED.value}
        # The worker is stopping: back to the queue now (arq re-queues the job itself).
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
            raise Retry(defer=delay) from exc
        return await _fail(runtime, spec, exc)
    finally:
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
    await runtime.runs.finish(spec.run_id, state, output_json=output_json, error=error)
    return {"state": state.value}


async def _fail(runtime: WorkerRuntime, spec: JobSpec, exc: Exception) -> dict[str, Any]:
    logger.warning("run failed", extra={"run_id": spec.run_id, "error_type": type(exc).__name__})
    return await _end(runtime, spec, RunState.FAILED, error=_error_info(exc))


def _error_info(exc: Exception) -> ErrorInfo:
    return ErrorInfo(type=type(exc).__name__, message=str(exc) or type(exc).__name__)
