"""Every Redis key and channel name langscale uses, in one place.

arq's own keys langscale uses (``arq:job:``, ``arq:in-progress:``) are defined in
:mod:`arq.constants`; they are re-exported here so nothing else spells them.
"""

from __future__ import annotations

from arq.constants import in_progress_key_prefix, job_key_prefix

PREFIX = "langscale:"

# Hash: pipeline name -> PipelineDefinition JSON. Kept without TTL so the gateway can
# validate while workers are scaled to zero.
PIPELINES = PREFIX + "pipelines"
# Sorted set: worker id -> unix time of its last heartbeat.
WORKERS = PREFIX + "workers"
# Pub/sub channel: the id of every run that reaches a final state.
RUN_FINISHED_CHANNEL = PREFIX + "run-finished"
# Pub/sub channel: the id of every running run a client cancelled; its worker stops it.
CANCEL_CHANNEL = PREFIX + "cancel"
# Sorted set: failed run id -> unix time it failed, for operators (GET /v1/runs?state=failed).
FAILED_RUNS = PREFIX + "failed-runs"

__all__ = [
    "CANCEL_CHANNEL",
    "FAILED_RUNS",
    "PIPELINES",
    "RUN_FINISHED_CHANNEL",
    "WORKERS",
    "completed_key_prefix",
    "idempotency_key",
    "in_progress_key_prefix",
    "job_key",
    "job_key_prefix",
    "leases_key",
    "llm_cache_key",
    "llm_rate_key",
    "llm_replay_key",
    "rate_limit_key",
    "run_key",
    "stream_key",
    "wake_channel",
]


def run_key(run_id: str) -> str:
    """Hash with the state, timestamps, output and error of one run."""
    return f"{PREFIX}run:{run_id}"


def stream_key(run_id: str) -> str:
    """Redis Stream of one run's events: state changes, chunks, retries, the end."""
    return f"{PREFIX}stream:{run_id}"


def job_key(run_id: str) -> str:
    """arq's job payload key; the run id is the arq job id."""
    return job_key_prefix + run_id


def wake_channel(queue_name: str) -> str:
    """Pub/sub channel on which the gateway wakes idle workers of a queue."""
    return f"{PREFIX}wake:{queue_name}"


def leases_key(queue_name: str) -> str:
    """Sorted set: id of each running job -> when its worker's lease ends (unix ms).

    arq's in-progress keys say whether one job is held; this set counts them cheaply."""
    return f"{PREFIX}leases:{queue_name}"


def completed_key_prefix(queue_name: str) -> str:
    """Prefix of per-second counters of runs that ended (``<prefix><unix second>``)."""
    return f"{PREFIX}completed:{queue_name}:"


def idempotency_key(tenant: str, key: str) -> str:
    return f"{PREFIX}idempotency:{tenant}:{key}"


def rate_limit_key(key_id: str) -> str:
    return f"{PREFIX}rate:{key_id}"


def llm_rate_key(limit_id: str) -> str:
    """Hash: the shared budget of one provider/model (GCRA times of requests and tokens,
    and "blocked until" after a 429), for every worker process."""
    return f"{PREFIX}llm-rate:{limit_id}"


def llm_cache_key(digest: str) -> str:
    """An LLM answer cached by the hash of its model, parameters and messages."""
    return f"{PREFIX}llm-cache:{digest}"


def llm_replay_key(run_id: str) -> str:
    """Hash: the LLM answers a run's attempts completed, for a retry to replay them."""
    return f"{PREFIX}llm-replay:{run_id}"
