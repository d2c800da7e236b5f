"""The job contract between gateway and worker: run states, the job payload, run records.

Both services import these definitions; nothing here touches Redis or LangChain.
"""

from __future__ import annotations

import re
import time
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PIPELINE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")
# Path segments the gateway uses itself; a pipeline cannot be named after them.
RESERVED_PIPELINE_NAMES = frozenset({"v1", "docs", "redoc", "healthz", "readyz", "metrics"})
RUN_ID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

# The tenant of runs created without authentication.
DEFAULT_TENANT = "default"

# The arq function name every langscale job calls.
JOB_FUNCTION = "run_pipeline"

# Config keys a client may pass through to the Runnable (as LangServe's config_keys).
CLIENT_CONFIG_KEYS = frozenset(
    {"configurable", "tags", "metadata", "run_name", "max_concurrency", "recursion_limit"}
)


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})


class StreamMode(StrEnum):
    """What a run publishes to its stream besides its state changes and final output."""

    OFF = "off"  # ainvoke: state changes and the end only
    CHUNKS = "chunks"  # astream: every output chunk
    EVENTS = "events"  # astream_events(version="v2"): every callback event


class EventType(StrEnum):
    """Types of the events in a run's stream (``keys.stream_key``)."""

    STATE = "state"  # {"state", "attempt"?}
    DATA = "data"  # one chunk, or one astream_events event
    RETRY = "retry"  # {"attempt"}: chunks that follow belong to a new attempt
    END = "end"  # {"state", "output", "error"}: the last event of a run
    WAIT = "wait"  # {"reason": "rate_limit", "seconds", "limit"}: waited for LLM budget


def new_run_id() -> str:
    return str(uuid.uuid4())


def is_valid_run_id(value: str) -> bool:
    return RUN_ID_PATTERN.fullmatch(value) is not None


def now_ms() -> int:
    return int(time.time() * 1000)


class ErrorInfo(BaseModel):
    """Why a run failed, in terms a client can act on."""

    type: str = Field(description="Machine-readable category, e.g. timeout, ValueError.")
    message: str


class JobSpec(BaseModel):
    """The single argument of every queued job: what to run, and the trace to continue."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    pipeline: str
    input: Any
    config: dict[str, Any] = Field(default_factory=dict)
    stream: StreamMode = StreamMode.OFF
    tenant: str = DEFAULT_TENANT
    trace_context: dict[str, str] = Field(default_factory=dict)
    enqueued_at_ms: int = Field(default_factory=now_ms)


class RunRecord(BaseModel):
    """A run as clients see it (``GET /v1/runs/{run_id}``)."""

    run_id: str
    pipeline: str
    state: RunState
    attempts: int = 0
    output: Any = None
    error: ErrorInfo | None = None
    last_error: ErrorInfo | None = Field(
        None, description="The error that made the latest retry (while the run goes on)."
    )
    worker: str | None = Field(None, description="The worker of the latest attempt.")
    tenant: str = Field(DEFAULT_TENANT, description="The tenant whose API key created it.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float | None = Field(None, description="Unix time, seconds.")
    started_at: float | None = None
    finished_at: float | None = None


class PipelineDefinition(BaseModel):
    """What a worker publishes about each pipeline so the gateway never imports user code."""

    name: str
    description: str = ""
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
