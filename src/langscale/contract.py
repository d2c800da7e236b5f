"""The job contract between gateway and worker: run states, the job payload, run records.

Both services import these definitions; nothing here touches Redis or LangChain.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PIPELINE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,62}")
# Path segments the gateway uses itself; a pipeline cannot be named after them.
RESERVED_PIPELINE_NAMES = frozenset({"v1", "docs", "redoc", "healthz", "readyz", "metrics"})
# Any UUID in its canonical form (the gateway makes version 4 ones; see keys.new_run_id).
RUN_ID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The tenant of runs created without authentication.
DEFAULT_TENANT = "default"
# The worker pool of workers that name none (the chart's `worker`).
DEFAULT_POOL = "default"

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
    LOG = "log"  # astream_log(diff=True): every RunLogPatch, as {"ops": [...]}


class EventType(StrEnum):
    """Types of the events in a run's stream (``keys.Keyspace.events``)."""

    STATE = "state"  # {"state", "attempt"?, "reason"?, "retry_in"?, "error"?}
    DATA = "data"  # one chunk, or one astream_events event
    RETRY = "retry"  # {"attempt"}: chunks that follow belong to a new attempt
    END = "end"  # {"state", "output", "error"}: the last event of a run
    WAIT = "wait"  # {"reason": "rate_limit", "seconds", "limit"}: waited for LLM budget
    # Only ever sent to a reader, never stored: {"lost", "state", "output"?, "error"?}:
    # events this reader can no longer have (trimmed or expired) were skipped.
    GAP = "gap"


def is_valid_run_id(value: str) -> bool:
    return RUN_ID_PATTERN.fullmatch(value) is not None


class ErrorInfo(BaseModel):
    """Why a run failed, in terms a client can act on."""

    type: str = Field(description="Machine-readable category, e.g. timeout, ValueError.")
    message: str


class JobSpec(BaseModel):
    """What one run executes: the pipeline, its input and config, and the trace to continue.

    The run hash keeps it as JSON (:meth:`stored`) without the run id and pipeline, which
    the hash holds anyway."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    pipeline: str
    input: Any
    config: dict[str, Any] = Field(default_factory=dict)
    stream: StreamMode = StreamMode.OFF
    # astream_log's filters (include_names, exclude_tags, ...), for StreamMode.LOG.
    stream_options: dict[str, list[str]] = Field(default_factory=dict)
    tenant: str = DEFAULT_TENANT
    trace_context: dict[str, str] = Field(default_factory=dict)

    def stored(self) -> str:
        return self.model_dump_json(exclude={"run_id", "pipeline"}, exclude_defaults=True)

    @classmethod
    def from_stored(cls, run_id: str, pipeline: str, stored: str | bytes) -> JobSpec:
        return cls.model_validate({**json.loads(stored), "run_id": run_id, "pipeline": pipeline})


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


class RunAccepted(BaseModel):
    """The answer to ``POST /v1/runs`` (202)."""

    run_id: str
    state: RunState
    status_url: str
    thread_id: str | None = Field(None, description="The run's thread, when it has one.")
    cancelled_run_ids: list[str] | None = Field(
        None, description="With a thread: the runs this run's interrupt or rollback cancelled."
    )


class ThreadRun(BaseModel):
    """One of a thread's latest runs, as ``GET /v1/threads/{thread_id}`` lists it."""

    run_id: str
    pipeline: str
    state: RunState
    error: ErrorInfo | None = None
    created_at: float | None = Field(None, description="Unix time, seconds.")
    started_at: float | None = None
    finished_at: float | None = None


class ThreadListItem(BaseModel):
    """A thread as ``GET /v1/threads`` lists it."""

    thread_id: str
    state: Literal["busy", "idle"] = Field(description="busy: it has a run not ended.")
    pending_runs: int = Field(description="Its runs that have not ended.")
    run_count: int = Field(description="Runs it has had.")
    messages: int = Field(description="Messages in its chat history.")
    created_at: float = Field(description="Unix time, seconds.")
    updated_at: float = Field(description="Its latest activity, Unix time, seconds.")


class ThreadView(BaseModel):
    """A thread (``GET /v1/threads/{thread_id}``)."""

    thread_id: str
    state: Literal["busy", "idle"] = Field(description="busy: it has a run not ended.")
    pending_run_ids: list[str] = Field(
        description="Its runs not ended, the head (running or next) first."
    )
    runs: list[ThreadRun] = Field(description="Its latest runs, oldest first.")
    run_count: int
    messages: int
    created_at: float
    updated_at: float


class ThreadPage(BaseModel):
    """One page of ``GET /v1/threads``."""

    threads: list[ThreadListItem]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page; null: there is none."
    )


class HistoryMessage(BaseModel):
    run_id: str = Field(description="The run that wrote it.")
    attempt: int = Field(description="The attempt of that run that wrote it.")
    message: dict[str, Any] = Field(
        description="The LangChain message (messages_to_dict form: type, data)."
    )


class ThreadHistory(BaseModel):
    """A thread's chat messages, oldest first (``GET /v1/threads/{thread_id}/history``)."""

    thread_id: str
    messages: list[HistoryMessage]


class RunPage(BaseModel):
    """One page of ``GET /v1/runs``."""

    runs: list[RunRecord]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next page; null: there is none."
    )


class PipelineDefinition(BaseModel):
    """What a worker publishes about each pipeline so the gateway never imports user code."""

    name: str
    description: str = ""
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    pool: str = Field(
        DEFAULT_POOL, description="The worker pool serving it (LANGSCALE_WORKER_POOL)."
    )
    needs_thread: bool = Field(
        False,
        description="Its runs need a thread (thread_id or config.configurable.session_id): "
        "it keeps a history per thread (RunnableWithMessageHistory's session_id).",
    )


def storable_problems(value: Any, path: str = "$", max_depth: int = 64) -> list[dict[str, str]]:
    """Why ``value`` cannot be stored with a run and read back as the same JSON (at most ten
    reasons, each with its JSON path): nesting deeper than ``max_depth``, strings with lone
    surrogates (not UTF-8), NaN, Infinity and numbers JSON turns into them (``1e400``)."""
    problems: list[dict[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]  # iterative: depth is untrusted
    while stack and len(problems) < 10:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list) and depth >= max_depth:
            problems.append({"path": where, "message": f"nested deeper than {max_depth} levels"})
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _is_utf8(key):
                    problems.append({"path": where, "message": "a key is not valid UTF-8"})
                stack.append((child, f"{where}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if not _is_utf8(item):
                problems.append({"path": where, "message": "not valid UTF-8 (a lone surrogate)"})
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(
                {"path": where, "message": "NaN, Infinity and numbers beyond ±1.8e308 are not JSON"}
            )
    return sorted(problems, key=lambda problem: problem["path"])


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
