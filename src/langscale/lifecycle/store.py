"""The gateway's side of the protocol: submit, read, follow and cancel runs.

Submitting is one atomic step per partition: admission (a hard limit on due runs), the
Idempotency-Key check and the enqueue happen in the same script, so concurrent requests
cannot slip past the limit or past each other's key.
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from langscale.contract import (
    DEFAULT_TENANT,
    ErrorInfo,
    EventType,
    JobSpec,
    PipelineDefinition,
    RunRecord,
    RunState,
)
from langscale.keys import new_run_id, partition_of
from langscale.lifecycle.config import LifecycleConfig
from langscale.lifecycle.scripts import Scripts

# Fields of a run hash a reader needs (never its job, which may be large).
_RECORD_FIELDS = (
    "pipeline",
    "state",
    "attempts",
    "output",
    "error",
    "last_error",
    "worker",
    "tenant",
    "metadata",
    "created",
    "started",
    "finished",
)

# Seconds of per-second completion counters averaged for the drain rate.
RATE_WINDOW = 10


class NotReplicated(ConnectionError):
    """New runs did not reach ``LANGSCALE_REDIS_WAIT_REPLICAS`` replicas in time; like an
    unreachable Redis, the client should retry (503)."""


@dataclass(frozen=True)
class Submitted:
    """What became of a submit: ``queued`` (the new runs), ``replay`` (an Idempotency-Key
    seen before: its run and that run's state now), ``conflict`` (the key names another
    request's run) or ``full`` (admission refused: ``due`` runs already wait)."""

    outcome: Literal["queued", "replay", "conflict", "full"]
    run_ids: list[str]
    state: RunState | None = None
    due: int = 0


@dataclass(frozen=True)
class FollowStart:
    """Where a reader of a run's events stands: the run's state, the number of its last
    event, and whether it has a stream (an unstreamed run that ended has none)."""

    state: RunState
    last_seq: int
    has_stream: bool


@dataclass(frozen=True)
class PipelineStats:
    pipeline: str
    ready: int  # due and waiting for a worker slot
    deferred: int  # waiting for a retry's backoff
    in_progress: int  # held by a worker's lease
    suspects: int  # lost with a dead worker, waiting to run alone
    oldest_ready_age_seconds: float
    completed_per_second: float  # runs that ended, averaged over RATE_WINDOW seconds


@dataclass(frozen=True)
class QueueStats:
    """A deployment's queue figures, summed over its pipelines (``GET /v1/queue``)."""

    queue: str
    ready: int  # due and not running: waiting for a worker slot (suspects included)
    deferred: int  # scheduled later (retry backoff)
    in_progress: int  # held by a live worker lease
    oldest_ready_age_seconds: float
    completed_per_second: float  # runs that ended, averaged over RATE_WINDOW seconds
    pipelines: tuple[PipelineStats, ...] = ()

    @property
    def backlog(self) -> int:
        """Ready + running: the work a fleet must hold; the autoscaling metric."""
        return self.ready + self.in_progress

    @classmethod
    def total(cls, queue: str, pipelines: Sequence[PipelineStats]) -> QueueStats:
        return cls(
            queue=queue,
            ready=sum(p.ready + p.suspects for p in pipelines),
            deferred=sum(p.deferred for p in pipelines),
            in_progress=sum(p.in_progress for p in pipelines),
            oldest_ready_age_seconds=max(
                (p.oldest_ready_age_seconds for p in pipelines), default=0.0
            ),
            completed_per_second=sum(p.completed_per_second for p in pipelines),
            pipelines=tuple(pipelines),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ready": self.ready,
            "deferred": self.deferred,
            "in_progress": self.in_progress,
            "backlog": self.backlog,
            "oldest_ready_age_seconds": self.oldest_ready_age_seconds,
            "completed_per_second": self.completed_per_second,
            "pipelines": {p.pipeline: asdict(p) for p in self.pipelines},
        }


@dataclass(frozen=True)
class Catalog:
    """The pipelines gateways accept runs for, from the workers' heartbeats."""

    definitions: dict[str, PipelineDefinition]
    serving: dict[str, int]  # live workers serving each pipeline
    live_workers: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RunStore:
    """Every read and write a gateway makes of runs."""

    def __init__(self, redis: Redis, config: LifecycleConfig) -> None:
        self.redis = redis
        self.config = config
        self.keyspace = config.keyspace
        self._scripts = Scripts(redis)
        self._header = config.header

    # --- submit ---------------------------------------------------------------------------
    def partition_for(self, tenant: str, idempotency_key: str | None = None) -> int:
        """A new request's partition: fixed by its Idempotency-Key (so a repeat finds the
        key), else any."""
        if idempotency_key is not None:
            return zlib.crc32(f"{tenant}\0{idempotency_key}".encode()) % self.config.partitions
        return random.randrange(self.config.partitions)

    def new_run_ids(self, count: int, partition: int) -> list[str]:
        return [new_run_id(partition) for _ in range(count)]

    async def submit(
        self,
        specs: Sequence[JobSpec],
        *,
        tenant: str = DEFAULT_TENANT,
        metadata: dict[str, Any] | None = None,
        streamed: bool = False,
        idempotency: tuple[str, str] | None = None,
    ) -> Submitted:
        """Queue runs of one pipeline, all made by :meth:`new_run_ids` for one partition.
        ``idempotency``: the request's (Idempotency-Key, request hash)."""
        partition = partition_of(specs[0].run_id)
        pipeline = specs[0].pipeline
        queue = self.keyspace.queue(partition, pipeline)
        idem_key, request_hash = (
            (self.keyspace.idempotency(partition, tenant, idempotency[0]), idempotency[1])
            if idempotency
            else (queue, "")
        )
        # The limit holds per partition (one atomic step can only see its own).
        limit = math.ceil(self.config.admission_max_ready / self.config.partitions)
        args: list[Any] = [
            *self._header.for_partition(partition),
            limit,
            self.config.idempotency_window,
            request_hash,
            pipeline,
            tenant,
            json.dumps(metadata) if metadata else "",
            1 if streamed else 0,
        ]
        for spec in specs:
            args += [spec.run_id, spec.stored()]
        keys = [queue, idem_key, *(self.keyspace.run(s.run_id) for s in specs)]
        replicas = self.config.wait_replicas
        if replicas:
            reply, reached = await self._scripts.replicated(
                self.redis, "enqueue", keys, args, replicas
            )
            # A replay too: the run it names must be as safe as a new one.
            if reached < replicas and _text(reply[0]) in ("queued", "replay"):
                raise NotReplicated(
                    f"the runs reached {reached} of {replicas} Redis replicas in time: "
                    "they may not survive a failover; retry with the same Idempotency-Key"
                )
        else:
            reply = await self._scripts("enqueue", keys, args)
        outcome = _text(reply[0])
        if outcome == "queued":
            return Submitted("queued", [s.run_id for s in specs])
        if outcome == "full":
            return Submitted("full", [], due=int(reply[1]))
        if outcome == "replay":
            return Submitted("replay", [_text(reply[1])], state=RunState(_text(reply[2])))
        return Submitted("conflict", [_text(reply[1])])

    # --- read -----------------------------------------------------------------------------
    async def get(self, run_id: str) -> RunRecord | None:
        return (await self.get_many([run_id]))[0]

    async def get_many(self, run_ids: Sequence[str]) -> list[RunRecord | None]:
        if len(run_ids) == 1:
            rows = [await self.redis.hmget(self.keyspace.run(run_ids[0]), list(_RECORD_FIELDS))]  # type: ignore[misc]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.hmget(self.keyspace.run(run_id), list(_RECORD_FIELDS))
                rows = await pipe.execute()
        return [_record(run_id, row) for run_id, row in zip(run_ids, rows, strict=True)]

    async def failed_run_ids(self, limit: int) -> list[str]:
        """Failed runs of every partition, newest first (kept as long as their hashes)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in range(self.config.partitions):
                pipe.zrevrange(self.keyspace.failed(partition), 0, limit - 1, withscores=True)
            rows = await pipe.execute()
        newest = sorted((item for row in rows for item in row), key=lambda i: i[1], reverse=True)
        return [_text(run_id) for run_id, _ in newest[:limit]]

    # --- change ---------------------------------------------------------------------------
    async def cancel(self, run_id: str, reason: str) -> RunState | None:
        """Cancel a queued or running run. Returns the state it had (None: no such run);
        a final state means nothing changed."""
        error = ErrorInfo(type="cancelled", message=reason)
        before = await self._run_script(run_id, "cancel", error.model_dump_json())
        before = _text(before)
        return RunState(before) if before else None

    async def requeue_failed(self, run_id: str) -> int:
        """Put a failed run back on its queue (operators): 1 done, 0 the run is not failed,
        -1 its job is no longer kept."""
        return int(await self._run_script(run_id, "requeue_failed"))

    # --- follow ---------------------------------------------------------------------------
    async def follow(self, run_id: str) -> FollowStart | None:
        """Start (or resume) reading a run's events; gives it a stream if it needs one."""
        reply = await self._run_script(run_id, "follow")
        if not reply:
            return None
        state, seq, has_stream = reply
        return FollowStart(RunState(_text(state)), int(seq), bool(int(has_stream)))

    async def read_events(
        self, run_id: str, after: int, count: int = 100
    ) -> list[tuple[int, EventType, str]]:
        """Up to ``count`` stored events numbered above ``after``: (number, type, data)."""
        entries = await self.redis.xrange(
            self.keyspace.events(run_id), min=f"{after + 1}-0", count=count
        )
        return [
            (int(_text(entry_id).partition("-")[0]), EventType(_text(f[b"t"])), _text(f[b"d"]))
            for entry_id, f in entries
        ]

    async def last_seq(self, run_id: str) -> int:
        return int(await self.redis.hget(self.keyspace.run(run_id), "seq") or 0)  # type: ignore[misc]

    # --- queues and pipelines -------------------------------------------------------------
    async def pipeline_stats(self, pipelines: Sequence[str]) -> list[PipelineStats]:
        """Queue figures per pipeline, summed over partitions (one call per partition)."""
        if not pipelines:
            return []
        totals = {p: [0, 0, 0, 0, -1.0, 0] for p in pipelines}
        now = 0
        for partition in range(self.config.partitions):
            reply = await self._scripts(
                "queue_stats",
                [self.keyspace.clock(partition)],
                [*self._header.for_partition(partition), RATE_WINDOW, *pipelines],
            )
            now = int(reply[0])
            for index, pipeline in enumerate(pipelines):
                due, deferred, running, suspects, oldest, done = reply[
                    1 + 6 * index : 7 + 6 * index
                ]
                total = totals[pipeline]
                for slot, value in enumerate((due, deferred, running, suspects)):
                    total[slot] += int(value)
                oldest = float(oldest)
                if oldest >= 0 and (total[4] < 0 or oldest < total[4]):
                    total[4] = oldest
                total[5] += int(done)
        return [
            PipelineStats(
                pipeline=p,
                ready=int(t[0]),
                deferred=int(t[1]),
                in_progress=int(t[2]),
                suspects=int(t[3]),
                oldest_ready_age_seconds=max(0.0, (now - t[4]) / 1000) if t[4] >= 0 else 0.0,
                completed_per_second=t[5] / RATE_WINDOW,
            )
            for p, t in totals.items()
        ]

    async def catalog(self) -> Catalog:
        keyspace = self.keyspace
        reply = await self._scripts(
            "registry_read",
            [keyspace.workers, keyspace.pipelines, keyspace.pipelines_seen],
            [
                keyspace.served_prefix,
                "",
                self.config.heartbeat_stale_ms,
                self.config.pipeline_retention_ms,
            ],
        )
        definitions: dict[str, PipelineDefinition] = {}
        serving: dict[str, int] = {}
        for i in range(1, len(reply), 3):
            name = _text(reply[i])
            definitions[name] = PipelineDefinition.model_validate_json(reply[i + 1])
            serving[name] = int(reply[i + 2])
        return Catalog(definitions, serving, int(reply[0]))

    async def _run_script(self, run_id: str, name: str, *args: Any) -> Any:
        partition = partition_of(run_id)
        return await self._scripts(
            name,
            [self.keyspace.run(run_id)],
            [*self._header.for_partition(partition), run_id, *args],
        )


def _record(run_id: str, row: Sequence[bytes | None]) -> RunRecord | None:
    fields = dict(
        zip(_RECORD_FIELDS, (_text(v) if v is not None else None for v in row), strict=True)
    )
    if not fields["state"]:
        return None
    return RunRecord(
        run_id=run_id,
        pipeline=fields["pipeline"] or "",
        state=RunState(fields["state"]),
        attempts=int(fields["attempts"] or 0),
        output=json.loads(fields["output"]) if fields["output"] else None,
        error=ErrorInfo.model_validate_json(fields["error"]) if fields["error"] else None,
        last_error=ErrorInfo.model_validate_json(fields["last_error"])
        if fields["last_error"]
        else None,
        worker=fields["worker"] or None,
        tenant=fields["tenant"] or DEFAULT_TENANT,
        metadata=json.loads(fields["metadata"]) if fields["metadata"] else {},
        created_at=_seconds(fields["created"]),
        started_at=_seconds(fields["started"]),
        finished_at=_seconds(fields["finished"]),
    )


def _seconds(ms: str | None) -> float | None:
    return int(ms) / 1000 if ms else None
