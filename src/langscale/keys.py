"""Every Redis key and channel name langscale uses, in one place.

arq's own keys (``arq:job:``, ``arq:in-progress:``, ``arq:result:``, ``arq:retry:``) are
defined in :mod:`arq.constants`; they are re-exported here so nothing else spells them.
"""

from __future__ import annotations

from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix

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

__all__ = [
    "CANCEL_CHANNEL",
    "PIPELINES",
    "RUN_FINISHED_CHANNEL",
    "WORKERS",
    "in_progress_key_prefix",
    "job_key",
    "job_key_prefix",
    "result_key_prefix",
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
