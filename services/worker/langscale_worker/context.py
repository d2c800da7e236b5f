"""What an attempt's LangChain config carries for the code that runs inside it.

:func:`langscale_worker.execute.run_config` writes these metadata keys; outgoing calls
(rate limits, cache, replay, wait events) read them back with :func:`attempt_of`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from langscale.contract import DEFAULT_TENANT

RUN_ID_KEY = "langscale_run_id"
TENANT_KEY = "langscale_tenant"  # shares of the LLM rate limit, the cache's scope
PIPELINE_KEY = "langscale_pipeline"
ATTEMPT_KEY = "langscale_attempt"  # a first attempt has nothing to replay
FENCE_KEY = "langscale_fence"  # every write of the attempt presents it
THREAD_KEY = "thread_id"  # the run's thread; LangSmith groups a thread's traces by it


@dataclass(frozen=True)
class AttemptRef:
    run_id: str
    fence: str
    tenant: str
    pipeline: str
    attempt: int


def attempt_metadata(
    run_id: str, fence: str, tenant: str, pipeline: str, attempt: int
) -> dict[str, Any]:
    return {
        RUN_ID_KEY: run_id,
        FENCE_KEY: fence,
        TENANT_KEY: tenant,
        PIPELINE_KEY: pipeline,
        ATTEMPT_KEY: attempt,
    }


def root_run_id(run_id: str, attempt: int) -> uuid.UUID:
    """The LangChain run id of an attempt's root run (what LangSmith shows as the trace):
    the langscale run id for the first attempt, so an SRE goes from a run to its trace; a
    retry is a separate trace, its id derived from the run id and the attempt number (and
    the run id in its metadata)."""
    if attempt <= 1:
        return uuid.UUID(run_id)
    return uuid.uuid5(uuid.UUID(run_id), f"attempt-{attempt}")


def attempt_of(metadata: dict[str, Any]) -> AttemptRef | None:
    """The attempt a LangChain call belongs to; None outside a langscale run."""
    run_id = metadata.get(RUN_ID_KEY)
    if not run_id:
        return None
    return AttemptRef(
        run_id=str(run_id),
        fence=str(metadata.get(FENCE_KEY) or ""),
        tenant=str(metadata.get(TENANT_KEY) or DEFAULT_TENANT),
        pipeline=str(metadata.get(PIPELINE_KEY) or ""),
        attempt=int(metadata.get(ATTEMPT_KEY) or 0),
    )


def tenant_of(metadata: dict[str, Any]) -> str:
    return str(metadata.get(TENANT_KEY) or DEFAULT_TENANT)
