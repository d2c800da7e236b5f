"""Every Redis key and channel name langscale uses, in one place.

The keyspace is split into **partitions**. A partition is one Redis Cluster hash slot: every
key of a partition carries the same hash tag (``{<namespace>:<n>}``), so each lifecycle
script touches one slot and stays atomic on a single Redis, a Sentinel-managed one, or a
Redis Cluster. A run lives in one partition with all its keys (hash, event stream, LLM
replay), next to the per-pipeline queues and leases it moves through. Its partition is
written into its id (the last byte of the UUID), so any process finds a run's keys from the
id alone, whatever the number of partitions is set to later. A deployment of n partitions
uses the first n of :func:`partition_order`, which spreads them evenly over a cluster's
hash slots (so over its masters) whatever n is.

Lua scripts build the per-run and per-pipeline names of a partition from its prefix with the
same kinds (:data:`LUA_KEY_KINDS`, rendered into every script by
:mod:`langscale.lifecycle.scripts`), so a name is still spelled only here.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

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
# A thread (conversation) lives in one partition with all its runs; its keys are
# <partition prefix><kind>:<tenant>:<thread id> (a run's hash names it in its `thread` field).
THREAD = "thread"  # Hash: {created, updated, runs, partial_run, partial_until}: a tenant's thread
THREAD_QUEUE = "thread-queue"  # List: the thread's runs not ended, in order; the head may run
THREAD_LOG = "thread-log"  # List: the thread's latest run ids, oldest first (capped)
HISTORY = "history"  # List: chat messages, "<run id> <attempt> <message JSON>" (capped)
THREADS = "threads"  # Sorted set per tenant: thread id -> created (ms): the threads listing
#                      (a thread that expired is a hole, removed when a listing meets it)
RUNS = "runs"  # Sorted set per tenant (and per tenant + pipeline or metadata value): run id
#                -> created (ms): the runs listing's indexes, pruned by age, holes tolerated
PRUNED = "pruned"  # String per listing index (<kind>:<index name after the prefix>): set
#                    for 10 s when the index was pruned and its TTL renewed (see create_runs)
TENANTS = "tenants"  # Set: tenants with runs in this partition (admins' listing merges them)
WEBHOOKS = "webhooks"  # Sorted set: run id -> when its webhook delivery is next due (ms)

# Channels, under the deployment's prefix (pub/sub is cluster-wide).
FINISHED = "finished"  # the id of every run that reaches a final state
CANCEL = "cancel"  # the id of every running run a client cancelled
WAKE = "wake"  # per pipeline (wake:<pipeline>): a run of it became due; the message is
#              the partition's key prefix
WEBHOOK = "webhook"  # a run with a webhook ended: a delivery is due (gateways deliver)

LUA_KEY_KINDS = {
    "RUN": RUN,
    "EVENTS": EVENTS,
    "REPLAY": REPLAY,
    "QUEUE": QUEUE,
    "LEASES": LEASES,
    "SUSPECTS": SUSPECTS,
    "FAILED": FAILED,
    "RUNS": RUNS,
    "TENANTS": TENANTS,
    "PRUNED": PRUNED,
    "WEBHOOKS": WEBHOOKS,
    "DONE": DONE,
    "THREAD": THREAD,
    "THREAD_QUEUE": THREAD_QUEUE,
    "THREAD_LOG": THREAD_LOG,
    "HISTORY": HISTORY,
    "THREADS": THREADS,
    "FINISHED": FINISHED,
    "CANCEL": CANCEL,
    "WAKE": WAKE,
    "WEBHOOK": WEBHOOK,
}

# A run id's last byte names its partition, so at most this many partitions exist.
MAX_PARTITIONS = 256


def partition_of(run_id: str) -> int:
    """The partition written into a run id (any UUID has one)."""
    return int(run_id[-2:], 16)


@cache
def partition_order(namespace: str) -> tuple[int, ...]:
    """Every partition, in the order deployments take them: 0 first (a single Redis uses
    only it), then each next one the farthest, in hash slots, from those taken before
    (farthest-point order on the ring of slots). So the first n spread evenly over a
    cluster's slots for any n, and raising n adds partitions without moving any."""
    slots = [key_slot(f"{namespace}:{n}".encode()) for n in range(MAX_PARTITIONS)]

    def distance(a: int, b: int) -> int:
        gap = abs(slots[a] - slots[b])
        return min(gap, REDIS_CLUSTER_HASH_SLOTS - gap)

    order = [0]
    nearest = {n: distance(n, 0) for n in range(1, MAX_PARTITIONS)}
    while nearest:
        chosen = max(nearest, key=lambda n: (nearest[n], -n))
        del nearest[chosen]
        order.append(chosen)
        for n in nearest:
            nearest[n] = min(nearest[n], distance(n, chosen))
    return tuple(order)


def new_run_id(partition: int) -> str:
    """A random (version 4) UUID whose last byte is ``partition``."""
    if not 0 <= partition < MAX_PARTITIONS:
        raise ValueError(f"partition {partition} is not in [0, {MAX_PARTITIONS})")
    return str(uuid.uuid4())[:-2] + f"{partition:02x}"


def thread_partition(tenant: str, thread_id: str, partitions: Sequence[int]) -> int:
    """The partition of a tenant's thread, one of the deployment's ``partitions``
    (:meth:`Keyspace.partitions`): every run of the thread is made in it, so one script
    sees the thread and all its runs."""
    return partitions[zlib.crc32(f"{tenant}\0{thread_id}".encode()) % len(partitions)]


@dataclass(frozen=True)
class Keyspace:
    """The names of one deployment's keys, under its namespace (``LANGSCALE_QUEUE_NAME``)."""

    namespace: str = "langscale"

    def partitions(self, count: int) -> tuple[int, ...]:
        """The partitions a deployment of ``count`` partitions uses (see partition_order)."""
        return partition_order(self.namespace)[:count]

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

    def thread(self, partition: int, tenant: str, thread_id: str) -> str:
        return f"{self.prefix(partition)}{THREAD}:{tenant}:{thread_id}"

    def thread_queue(self, partition: int, tenant: str, thread_id: str) -> str:
        return f"{self.prefix(partition)}{THREAD_QUEUE}:{tenant}:{thread_id}"

    def thread_log(self, partition: int, tenant: str, thread_id: str) -> str:
        return f"{self.prefix(partition)}{THREAD_LOG}:{tenant}:{thread_id}"

    def history(self, partition: int, tenant: str, thread_id: str) -> str:
        return f"{self.prefix(partition)}{HISTORY}:{tenant}:{thread_id}"

    def threads_index(self, partition: int, tenant: str) -> str:
        return f"{self.prefix(partition)}{THREADS}:{tenant}"

    def runs_index(
        self,
        partition: int,
        tenant: str,
        pipeline: str | None = None,
        metadata: tuple[str, str] | None = None,
    ) -> str:
        """Sorted set: a tenant's runs (or those of one pipeline, or with one value of an
        indexed metadata key) -> created (ms)."""
        name = f"{self.prefix(partition)}{RUNS}:{tenant}"
        if pipeline is not None:
            return f"{name}:p:{pipeline}"
        if metadata is not None:
            key, value = metadata
            return f"{name}:m:{len(key)}:{key}={value}"
        return name

    def tenants(self, partition: int) -> str:
        return f"{self.prefix(partition)}{TENANTS}"

    def webhooks(self, partition: int) -> str:
        return f"{self.prefix(partition)}{WEBHOOKS}"

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
    def pipelines_forgotten(self) -> str:
        """Sorted set: pipeline name -> when the registry forgot it (ms); gateways fail the
        runs still queued for it, then drop the name."""
        return self._global + "pipelines-forgotten"

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

    @property
    def webhook_channel(self) -> str:
        return self._global + WEBHOOK

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
