"""Every Redis key and channel name langscale uses, in one place.

The keyspace is split into **partitions**. A partition is one Redis Cluster hash slot: every
key of a partition carries the same hash tag (``{<namespace>:<n>}``), so each lifecycle
script touches one slot and stays atomic on a single Redis, a Sentinel-managed one, or a
Redis Cluster. A run lives in one partition with all its keys (hash, event stream, LLM
replay), next to the per-pipeline queues and leases it moves through. Its partition is
written into its id (the last byte of the UUID), so any process finds a run's keys from the
id alone, whatever the number of partitions is set to later.

Lua scripts build the per-run and per-pipeline names of a partition from its prefix with the
same kinds (:data:`LUA_KEY_KINDS`, rendered into every script by
:mod:`langscale.lifecycle.scripts`), so a name is still spelled only here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# Kinds of partition keys: <partition prefix><kind>:<id>.
RUN = "run"  # Hash: state, timestamps, fence token, job, output, error of one run
EVENTS = "events"  # Stream: a run's events, entry ids <seq>-0 (only if streamed or followed)
REPLAY = "replay"  # Hash: LLM answers a run's attempts completed, until the run ends
QUEUE = "queue"  # Sorted set per pipeline: queued run id -> due time (ms, Redis clock)
LEASES = "leases"  # Sorted set per pipeline: running run id -> lease end (ms, Redis clock)
SUSPECTS = "suspects"  # Sorted set per pipeline: runs whose worker died -> when (ms)
FAILED = "failed"  # Sorted set: failed run id -> when it failed (ms), pruned by age
IDEMPOTENCY = "idem"  # String per tenant and key: "<run id> <request hash>"
DONE = "done"  # String per pipeline and second: runs that ended in that second
CLOCK = "clock"  # Hash: {tick, resumed}: when a worker last reached Redis (ms)
ISOLATOR = "isolator"  # String: the worker that runs this partition's suspects alone

# Channels, under the deployment's prefix (pub/sub is cluster-wide).
FINISHED = "finished"  # the id of every run that reaches a final state
CANCEL = "cancel"  # the id of every running run a client cancelled
WAKE = "wake"  # per pipeline (wake:<pipeline>): a run of it became due

LUA_KEY_KINDS = {
    "RUN": RUN,
    "EVENTS": EVENTS,
    "REPLAY": REPLAY,
    "QUEUE": QUEUE,
    "LEASES": LEASES,
    "SUSPECTS": SUSPECTS,
    "FAILED": FAILED,
    "DONE": DONE,
    "FINISHED": FINISHED,
    "CANCEL": CANCEL,
    "WAKE": WAKE,
}

# A run id's last byte names its partition, so at most this many partitions exist.
MAX_PARTITIONS = 256


def partition_of(run_id: str) -> int:
    """The partition written into a run id (any UUID has one)."""
    return int(run_id[-2:], 16)


def new_run_id(partition: int) -> str:
    """A random (version 4) UUID whose last byte is ``partition``."""
    if not 0 <= partition < MAX_PARTITIONS:
        raise ValueError(f"partition {partition} is not in [0, {MAX_PARTITIONS})")
    return str(uuid.uuid4())[:-2] + f"{partition:02x}"


@dataclass(frozen=True)
class Keyspace:
    """The names of one deployment's keys, under its namespace (``LANGSCALE_QUEUE_NAME``)."""

    namespace: str = "langscale"

    # --- partition keys ----------------------------------------------------------------
    def prefix(self, partition: int) -> str:
        """``{<namespace>:<n>}:`` — the hash tag makes the partition one cluster slot."""
        return f"{{{self.namespace}:{partition}}}:"

    def run(self, run_id: str) -> str:
        return f"{self.prefix(partition_of(run_id))}{RUN}:{run_id}"

    def events(self, run_id: str) -> str:
        return f"{self.prefix(partition_of(run_id))}{EVENTS}:{run_id}"

    def replay(self, run_id: str) -> str:
        return f"{self.prefix(partition_of(run_id))}{REPLAY}:{run_id}"

    def queue(self, partition: int, pipeline: str) -> str:
        return f"{self.prefix(partition)}{QUEUE}:{pipeline}"

    def leases(self, partition: int, pipeline: str) -> str:
        return f"{self.prefix(partition)}{LEASES}:{pipeline}"

    def suspects(self, partition: int, pipeline: str) -> str:
        return f"{self.prefix(partition)}{SUSPECTS}:{pipeline}"

    def failed(self, partition: int) -> str:
        return f"{self.prefix(partition)}{FAILED}"

    def idempotency(self, partition: int, tenant: str, key: str) -> str:
        return f"{self.prefix(partition)}{IDEMPOTENCY}:{tenant}:{key}"

    def clock(self, partition: int) -> str:
        return f"{self.prefix(partition)}{CLOCK}"

    def isolator(self, partition: int) -> str:
        return f"{self.prefix(partition)}{ISOLATOR}"

    # --- deployment-wide keys (one slot: the namespace's own tag) --------------------------
    @property
    def _global(self) -> str:
        return f"{{{self.namespace}}}:"

    @property
    def pipelines(self) -> str:
        """Hash: pipeline name -> PipelineDefinition JSON, while a live worker serves it."""
        return self._global + "pipelines"

    def served_by(self, pipeline: str) -> str:
        """Sorted set: id of each worker serving a pipeline -> its last heartbeat (ms)."""
        return f"{self._global}served:{pipeline}"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> its last heartbeat (ms, Redis clock); pruned by age."""
        return self._global + "workers"

    @property
    def served_prefix(self) -> str:
        return self._global + "served:"

    @property
    def pipelines_seen(self) -> str:
        """Sorted set: pipeline name -> the last heartbeat of any worker serving it (ms)."""
        return self._global + "pipelines-seen"

    @property
    def global_prefix(self) -> str:
        """``{<namespace>}:`` — deployment-wide keys and channels start with it."""
        return self._global

    # --- channels (pub/sub is cluster-wide) ---------------------------------------------
    def wake_channel(self, pipeline: str) -> str:
        return f"{self._global}{WAKE}:{pipeline}"

    @property
    def finished_channel(self) -> str:
        return self._global + FINISHED

    @property
    def cancel_channel(self) -> str:
        return self._global + CANCEL

    # --- gateway and outgoing-call keys (not part of a run's life) -----------------------
    def rate_limit(self, key_id: str) -> str:
        """String: the GCRA time of an API key's request budget."""
        return f"{self._global}rate:{key_id}"

    def llm_rate(self, limit_id: str) -> str:
        """Hash: the shared budget of one provider/model (GCRA times of requests and tokens,
        and "blocked until" after a 429), for every worker process."""
        return f"{{{self.namespace}:llm-rate:{limit_id}}}"

    def llm_cache(self, digest: str) -> str:
        """String: an LLM answer cached by the hash of its model, parameters and messages."""
        return f"{self.namespace}:llm-cache:{digest}"
