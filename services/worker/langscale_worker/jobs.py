"""The job every langscale run executes: run one pipeline for one run id."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langserve.serialization import WellKnownLCSerializer

from langscale.contract import CLIENT_CONFIG_KEYS, ErrorInfo, JobSpec, RunState
from langscale.runs import RunStore
from langscale.settings import Settings
from langscale_worker.registry import Pipeline

logger = logging.getLogger(__name__)

# LangServe's wire format for inputs and outputs, so RemoteRunnable clients round-trip
# messages and documents exactly as with LangServe.
SERIALIZER = WellKnownLCSerializer()

CTX_RUNTIME = "langscale"


@dataclass
class WorkerRuntime:
    """What every job needs, built once per worker process."""

    settings: Settings
    pipelines: dict[str, Pipeline]
    runs: RunStore


def run_config(spec: JobSpec) -> RunnableConfig:
    config: dict[str, Any] = {k: v for k, v in spec.config.items() if k in CLIENT_CONFIG_KEYS}
    metadata = dict(config.get("metadata") or {})
    metadata["langscale_run_id"] = spec.run_id
    config["metadata"] = metadata
    config["run_id"] = uuid.UUID(spec.run_id)
    return RunnableConfig(**config)  # type: ignore[typeddict-item]


async def run_pipeline(ctx: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    runtime: WorkerRuntime = ctx[CTX_RUNTIME]
    spec = JobSpec.model_validate(job)
    state, attempt = await runtime.runs.start(spec.run_id)
    if attempt < 0:
        # Delivered again after the run ended (e.g. a worker died after finishing it).
        return {"state": state.value, "duplicate": True}

    pipeline = runtime.pipelines.get(spec.pipeline)
    if pipeline is None:
        error = ErrorInfo(
            type="pipeline_not_found",
            message=f"no worker pipeline named {spec.pipeline!r}; "
            f"this worker serves {sorted(runtime.pipelines)}",
        )
        await runtime.runs.finish(spec.run_id, RunState.FAILED, error=error)
        return {"state": RunState.FAILED.value}

    timeout = runtime.settings.job_timeout
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            output = await pipeline.runnable.ainvoke(
                SERIALIZER.loadd(spec.input), config=run_config(spec)
            )
        output_json = SERIALIZER.dumps(output).decode()
    except TimeoutError as exc:
        if not deadline.expired():
            return await _fail(runtime, spec, exc)
        error = ErrorInfo(type="timeout", message=f"the run exceeded its timeout of {timeout:g} s")
        await runtime.runs.finish(spec.run_id, RunState.FAILED, error=error)
        return {"state": RunState.FAILED.value}
    except Exception as exc:
        return await _fail(runtime, spec, exc)

    await runtime.runs.finish(spec.run_id, RunState.SUCCEEDED, output_json=output_json)
    return {"state": RunState.SUCCEEDED.value}


async def _fail(runtime: WorkerRuntime, spec: JobSpec, exc: Exception) -> dict[str, Any]:
    logger.warning("run failed", extra={"run_id": spec.run_id, "error_type": type(exc).__name__})
    error = ErrorInfo(type=type(exc).__name__, message=str(exc) or type(exc).__name__)
    await runtime.runs.finish(spec.run_id, RunState.FAILED, error=error)
    return {"state": RunState.FAILED.value}
