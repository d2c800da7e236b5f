"""The gateway's side of the protocol: submit, read, follow and cancel runs.

Submitting is one atomic step per partition: admission (a hard limit on due runs), the
Idempotency-Key check and the enqueue happen in the same script, so concurrent requests
cannot slip past the limit or past each other's key.
"""

from __future__ import annotations

import asyncio
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
from langscale.keys import new_run_id, partition_of, thread_partition
from langscale.lifecycle.config import LifecycleConfig
from langscale.lifecycle.scripts import Scripts
from langscale.lifecycle.threads import (
    HistoryEntry,
    MultitaskStrategy,
    ThreadKeys,
    ThreadPage,
    ThreadRecord,
    ThreadSummary,
    parse_thread,
    read_history,
    thread_name,
)

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
    request's run) or ``full`` (admission refused: ``due`` runs already wait). Into a
    thread also: ``busy`` (strategy reject: ``run_ids`` is the thread's running or next run)
    or ``thread_full`` (``due`` runs of the thread wait); ``cancelled``: the thread's runs
    an interrupt or rollback cancelled."""

    outcome: Literal["queued", "replay", "conflict", "full", "busy", "thread_full"]
    run_ids: list[str]
    state: RunState | None = None
    due: int = 0
    cancelled: tuple[str, ...] = ()


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
    """A deployment's queue figures, summed over its pipelines, or over those of one worker
    pool (``GET /v1/queue[?pool=]``)."""

    queue: str
    ready: int  # due and not running: waiting for a worker slot (suspects included)
    deferred: int  # scheduled later (retry backoff)
    in_progress: int  # held by a live worker lease
    oldest_ready_age_seconds: float
    completed_per_second: float  # runs that ended, averaged over RATE_WINDOW seconds
    pipelines: tuple[PipelineStats, ...] = ()
    pool: str | None = None  # None: every pool

    @property
    def backlog(self) -> int:
        """Ready + running: the work a fleet must hold; the autoscaling metric."""
        return self.ready + self.in_progress

    @classmethod
    def total(
        cls, queue: str, pipelines: Sequence[PipelineStats], pool: str | None = None
    ) -> QueueStats:
        return cls(
            queue=queue,
            pool=pool,
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
        pool = {} if self.pool is None else {"pool": self.pool}
        return {
            "queue": self.queue,
            **pool,
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


def index_value(value: Any) -> str | None:
    """How a metadata value is written in an index name and compared with a filter: a string
    as is, a number or boolean as JSON; anything else is not indexed (None)."""
    if isinstance(value, str):
        return value if len(value) <= 200 else None
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


@dataclass(frozen=True)
class ListQuery:
    """A runs listing: whose runs (a tenant, or every tenant for admins), which ones, and
    where the previous page stopped (created ms, run id)."""

    tenant: str | None  # None: every tenant (admins)
    limit: int = 50
    states: frozenset[RunState] = frozenset()
    pipeline: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()  # key, value as index_value writes it
    created_after: int | None = None  # ms, inclusive
    created_before: int | None = None  # ms, inclusive
    cursor: tuple[int, str] | None = None
    indexed_metadata: tuple[str, ...] = ()
    budget_factor: int = 10  # entries examined per partition per page, times the limit

    @property
    def budget(self) -> int:
        return self.limit * self.budget_factor

    def indexes(self, keyspace: Any, partition: int) -> list[str]:
        """The narrowest indexes that hold every run this query can match."""
        tenants: list[str | None] = [self.tenant] if self.tenant is not None else [None]
        names = []
        for tenant in tenants:
            if tenant is None:
                names.append("*")
                continue
            indexed = next((m for m in self.metadata if m[0] in self.indexed_metadata), None)
            if indexed is not None:
                names.append(keyspace.runs_index(partition, tenant, metadata=indexed))
            elif self.pipeline is not None:
                names.append(keyspace.runs_index(partition, tenant, pipeline=self.pipeline))
            else:
                names.append(keyspace.runs_index(partition, tenant))
        return names

    def matches(self, record: RunRecord) -> bool:
        if self.states and record.state not in self.states:
            return False
        if self.pipeline is not None and record.pipeline != self.pipeline:
            return False
        return all(index_value(record.metadata.get(k)) == v for k, v in self.metadata)


@dataclass(frozen=True)
class WebhookDelivery:
    run_id: str
    attempt: int  # 1 for the first attempt; 0: the run expired, the delivery was dropped
    url: str
    record: RunRecord | None


@dataclass(frozen=True)
class ListPage:
    records: list[RunRecord]
    cursor: tuple[int, str] | None  # where the next page starts; None: this was the last


@dataclass(frozen=True)
class _PartitionPage:
    records: list[tuple[tuple[int, str], RunRecord]]
    stop: tuple[int, str] | None  # examined down to here only (None: the index ended)


# Most runs one enqueue_many call carries (Lua unpacks its keys at once).
MAX_BATCH_RUNS = 1000


@dataclass
class _Group:
    """One submit waiting for its partition's next enqueue_many call."""

    keys: list[str]  # its runs' hashes
    args: list[Any]  # its part of ARGV
    done: asyncio.Future[Any]  # its reply, as enqueue's


def _not_replicated(reached: int, replicas: int) -> NotReplicated:
    return NotReplicated(
        f"the runs reached {reached} of {replicas} Redis replicas in time: "
        "they may not survive a failover; retry with the same Idempotency-Key"
    )


class RunStore:
    """Every read and write a gateway makes of runs."""

    def __init__(self, redis: Redis, config: LifecycleConfig) -> None:
        self.redis = redis
        self.config = config
        self.keyspace = config.keyspace
        self._scripts = Scripts(redis)
        self._header = config.header
        # Submits waiting for their partition's next enqueue_many call, and the partitions
        # with a call in flight (see _enqueue_batched).
        self._waiting: dict[int, list[_Group]] = {}
        self._flushing: set[int] = set()
        self._next_partition = random.randrange(len(config.partition_ids))  # gateways differ
        self._flushes: set[asyncio.Task[None]] = set()

    # --- submit ---------------------------------------------------------------------------
    def partition_for(
        self, tenant: str, idempotency_key: str | None = None, thread_id: str | None = None
    ) -> int:
        """A new request's partition: its thread's (every run of a thread is in it), else
        fixed by its Idempotency-Key (so a repeat finds the key), else the one whose next
        enqueue call is forming (see _enqueue_batched), else the next in turn: under load
        one call at a time collects the submits, as on one Redis, and the calls go round
        the partitions (a random pick split them ~one submit per call on a cluster)."""
        ids = self.config.partition_ids
        if thread_id is not None:
            return thread_partition(tenant, thread_id, ids)
        if idempotency_key is not None:
            return ids[zlib.crc32(f"{tenant}\0{idempotency_key}".encode()) % len(ids)]
        forming = next((p for p in self._flushing if self._waiting.get(p)), None)
        if forming is not None:
            return forming
        self._next_partition = (self._next_partition + 1) % len(ids)
        return ids[self._next_partition]

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
        fields: dict[str, str] | None = None,
    ) -> Submitted:
        """Queue runs of one pipeline, all made by :meth:`new_run_ids` for one partition.
        ``idempotency``: the request's (Idempotency-Key, request hash); ``fields``: more
        fields of each run hash (its webhook). Each run joins the listing indexes of its
        tenant (:meth:`run_indexes`)."""
        partition = partition_of(specs[0].run_id)
        pipeline = specs[0].pipeline
        idem_key, request_hash = (
            (self.keyspace.idempotency(partition, tenant, idempotency[0]), idempotency[1])
            if idempotency
            else ("", "")
        )
        group: list[Any] = [
            request_hash,
            idem_key,
            pipeline,
            tenant,
            json.dumps(metadata) if metadata else "",
            1 if streamed else 0,
            "\n".join(self.run_indexes(partition, tenant, pipeline, metadata)),
            json.dumps(fields) if fields else "",
            len(specs),
        ]
        for spec in specs:
            group += [spec.run_id, spec.stored()]
        keys = [self.keyspace.run(s.run_id) for s in specs]
        reply = await self._enqueue_batched(partition, keys, group)
        outcome = _text(reply[0])
        if outcome == "queued":
            return Submitted("queued", [s.run_id for s in specs])
        if outcome == "full":
            return Submitted("full", [], due=int(reply[1]))
        if outcome == "replay":
            return Submitted("replay", [_text(reply[1])], state=RunState(_text(reply[2])))
        return Submitted("conflict", [_text(reply[1])])

    async def submit_to_thread(
        self,
        specs: Sequence[JobSpec],
        thread_id: str,
        strategy: MultitaskStrategy,
        *,
        tenant: str = DEFAULT_TENANT,
        metadata: dict[str, Any] | None = None,
        streamed: bool = False,
        idempotency: tuple[str, str] | None = None,
        fields: dict[str, str] | None = None,
    ) -> Submitted:
        """Queue runs of one pipeline at the end of a thread, made by :meth:`new_run_ids`
        for the thread's partition (:meth:`partition_for`); ``strategy`` says what becomes
        of the thread's runs that have not ended. ``idempotency``, ``fields`` and the
        listing indexes: as :meth:`submit`."""
        config = self.config
        thread = ThreadKeys.of(config, tenant, thread_id)
        partition = thread.partition
        assert all(partition_of(s.run_id) == partition for s in specs), "not the thread's"
        pipeline = specs[0].pipeline
        queue = self.keyspace.queue(partition, pipeline)
        idem_key, request_hash = (
            (self.keyspace.idempotency(partition, tenant, idempotency[0]), idempotency[1])
            if idempotency
            else (queue, "")
        )
        args: list[Any] = [
            *self._header.for_partition(partition),
            math.ceil(config.admission_max_ready / config.partitions),
            config.idempotency_window,
            request_hash,
            pipeline,
            tenant,
            json.dumps(metadata) if metadata else "",
            1 if streamed else 0,
            thread_name(tenant, thread_id),
            strategy,
            config.thread_max_pending,
            config.thread_ttl,
            config.thread_log_length,
            "\n".join(self.run_indexes(partition, tenant, pipeline, metadata)),
            json.dumps(fields) if fields else "",
        ]
        for spec in specs:
            args += [spec.run_id, spec.stored()]
        keys = [
            queue,
            idem_key,
            thread.thread,
            thread.queue,
            thread.log,
            thread.history,
            *(self.keyspace.run(s.run_id) for s in specs),
        ]
        reply = await self._enqueue("thread_submit", keys, args)
        outcome = _text(reply[0])
        if outcome == "queued":
            cancelled = tuple(_text(v) for v in reply[2:])
            return Submitted("queued", [s.run_id for s in specs], cancelled=cancelled)
        if outcome == "busy":
            return Submitted("busy", [_text(reply[1])], state=RunState(_text(reply[2])))
        if outcome in ("full", "thread_full"):
            return Submitted(outcome, [], due=int(reply[1]))  # type: ignore[arg-type]
        if outcome == "replay":
            return Submitted("replay", [_text(reply[1])], state=RunState(_text(reply[2])))
        return Submitted("conflict", [_text(reply[1])])

    async def _enqueue_batched(self, partition: int, keys: list[str], group: list[Any]) -> Any:
        """Group commit: a submit joins the next ``enqueue_many`` call of its partition. A
        call takes every submit waiting when it starts; while it is in flight, new submits
        wait for the next one, so under load one call carries many submits."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(partition, []).append(_Group(keys, group, future))
        if partition not in self._flushing:
            self._flushing.add(partition)
            task = asyncio.create_task(self._flush(partition))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self, partition: int) -> None:
        waiting = self._waiting
        try:
            while waiting.get(partition):
                groups: list[_Group] = []
                runs = 0
                while waiting[partition] and (not groups or runs < MAX_BATCH_RUNS):
                    group = waiting[partition].pop(0)
                    groups.append(group)
                    runs += len(group.keys)
                groups = [g for g in groups if not g.done.done()]  # their callers left
                if not groups:
                    continue
                try:
                    replies = await self._enqueue_many(partition, groups)
                except Exception as error:
                    for group in groups:
                        if not group.done.done():
                            group.done.set_exception(error)
                    continue
                for group, reply in zip(groups, replies, strict=True):
                    if group.done.done():
                        continue
                    if isinstance(reply, Exception):
                        group.done.set_exception(reply)
                    else:
                        group.done.set_result(reply)
        finally:
            self._flushing.discard(partition)
            for group in waiting.pop(partition, []):
                if not group.done.done():
                    group.done.set_exception(ConnectionError("the enqueue was interrupted"))

    async def _enqueue_many(
        self, partition: int, groups: Sequence[_Group]
    ) -> list[list[Any] | Exception]:
        """One ``enqueue_many`` call for ``groups``; each group's reply as enqueue's (or
        :class:`NotReplicated`, for its own caller to raise)."""
        keys = [self.keyspace.clock(partition)]
        args: list[Any] = [
            *self._header.for_partition(partition),
            # The limit holds per partition (one atomic step can only see its own).
            math.ceil(self.config.admission_max_ready / self.config.partitions),
            self.config.idempotency_window,
        ]
        for group in groups:
            keys += group.keys
            args += group.args
        replicas = self.config.wait_replicas
        reached = replicas
        if replicas:
            reply, reached = await self._scripts.replicated(
                self.redis, "enqueue_many", keys, args, replicas
            )
        else:
            reply = await self._scripts("enqueue_many", keys, args)
        replies: list[list[Any] | Exception] = []
        at = 0
        for _ in groups:
            count = int(reply[at])
            values = list(reply[at + 1 : at + 1 + count])
            at += 1 + count
            if reached < replicas and _text(values[0]) in ("queued", "replay"):
                replies.append(_not_replicated(reached, replicas))
            else:
                replies.append(values)
        return replies

    async def _enqueue(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run an enqueueing script; with LANGSCALE_REDIS_WAIT_REPLICAS, only answer once
        that many replicas have its writes."""
        replicas = self.config.wait_replicas
        if not replicas:
            return await self._scripts(script, keys, args)
        reply, reached = await self._scripts.replicated(self.redis, script, keys, args, replicas)
        # A replay too: the run it names must be as safe as a new one.
        if reached < replicas and _text(reply[0]) in ("queued", "replay"):
            raise _not_replicated(reached, replicas)
        return reply

    # --- threads --------------------------------------------------------------------------
    async def thread(self, tenant: str, thread_id: str) -> ThreadRecord | None:
        keys = ThreadKeys.of(self.config, tenant, thread_id)
        reply = await self._scripts(
            "thread_read",
            [keys.thread, keys.queue, keys.log, keys.history],
            self._header.for_partition(keys.partition),
        )
        return parse_thread(tenant, thread_id, reply)

    async def history(self, tenant: str, thread_id: str) -> list[HistoryEntry]:
        return await read_history(self.redis, self.config, tenant, thread_id)

    async def list_threads(
        self, tenant: str, limit: int, cursor: tuple[int, str] | None = None
    ) -> ThreadPage:
        """One page of a tenant's threads, newest created first, strictly after ``cursor``
        (each partition's index read in order from the cursor: O(page) per partition)."""
        found: list[ThreadSummary] = []
        more = False
        for partition in self.config.partition_ids:
            threads, partial = await self._list_threads(partition, tenant, limit, cursor)
            found += threads
            more = more or partial
        found.sort(key=lambda t: (t.created_ms, t.thread_id), reverse=True)
        next_cursor = None
        if len(found) > limit or (len(found) == limit and more):
            last = found[limit - 1]
            next_cursor = (last.created_ms, last.thread_id)
        return ThreadPage(found[:limit], next_cursor)

    async def _list_threads(
        self, partition: int, tenant: str, limit: int, cursor: tuple[int, str] | None
    ) -> tuple[list[ThreadSummary], bool]:
        """Up to ``limit`` live threads of one partition after ``cursor``, and whether more
        may follow."""
        top, after = ("+inf", "") if cursor is None else (str(cursor[0]), cursor[1])
        found: list[ThreadSummary] = []
        while True:
            reply = await self._scripts(
                "thread_list",
                [self.keyspace.clock(partition)],
                [*self._header.for_partition(partition), tenant, top, after, limit],
            )
            more, last_score, last_id = int(reply[0]), _text(reply[1]), _text(reply[2])
            for i in range(3, len(reply), 6):
                thread_id, created, updated, runs, pending, messages = reply[i : i + 6]
                found.append(
                    ThreadSummary(
                        _text(thread_id),
                        int(created),
                        int(updated),
                        int(runs),
                        int(pending),
                        int(messages),
                    )
                )
            if not more or len(found) >= limit:
                return found, bool(more)
            top, after = str(int(float(last_score))), last_id  # holes only: read on

    async def guard_idempotency(
        self, tenant: str, idempotency: tuple[str, str], thread_id: str, run_id: str
    ) -> str | None:
        """Before :meth:`submit_to_thread` with an Idempotency-Key: check (and hold) the
        key in its own partition, where a request without a thread or with another thread
        holds it. Returns the run id of the request holding it with another body (a
        conflict), else None. A key whose partition is the thread's needs no guard."""
        key, request_hash = idempotency
        partition = self.partition_for(tenant, key)
        if partition == thread_partition(tenant, thread_id, self.config.partition_ids):
            return None  # thread_submit itself checks the key
        reply = await self._scripts(
            "idempotency_guard",
            [self.keyspace.idempotency(partition, tenant, key)],
            [
                *self._header.for_partition(partition),
                self.config.idempotency_window,
                request_hash,
                run_id,
            ],
        )
        return _text(reply[1]) if _text(reply[0]) == "conflict" else None

    async def delete_thread(self, tenant: str, thread_id: str) -> tuple[str, str | None]:
        """Delete a thread that has no run that has not ended (its history, log, hash and
        listing entry). Returns ('deleted', None), ('none', None) when there is no such
        thread, or ('busy', the id of its run not ended that comes first)."""
        keys = ThreadKeys.of(self.config, tenant, thread_id)
        reply = await self._scripts(
            "thread_delete",
            [keys.thread, keys.queue, keys.log, keys.history],
            [*self._header.for_partition(keys.partition), tenant, thread_name(tenant, thread_id)],
        )
        outcome = _text(reply[0])
        return outcome, _text(reply[1]) if outcome == "busy" else None

    def run_indexes(
        self, partition: int, tenant: str, pipeline: str, metadata: dict[str, Any] | None
    ) -> list[str]:
        """The listing indexes a run is in: its tenant's, its tenant's for its pipeline, and
        one per indexed metadata key it has (LANGSCALE_RUNS_INDEXED_METADATA)."""
        keyspace = self.keyspace
        names = [
            keyspace.runs_index(partition, tenant),
            keyspace.runs_index(partition, tenant, pipeline=pipeline),
        ]
        for key in self.config.indexed_metadata:
            value = index_value((metadata or {}).get(key))
            if value is not None:
                names.append(keyspace.runs_index(partition, tenant, metadata=(key, value)))
        return names

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

    def finished_records(self, notice: str) -> dict[str, RunRecord]:
        """The records a finished notice carries after its ids (runs a worker ended, with
        small outputs): a waiting request needs no read of them."""
        _, _, rows = notice.partition("\n")
        if not rows:
            return {}
        records = {}
        for run_id, row in json.loads(rows).items():
            record = _record(run_id, [None if v is False else v for v in row])
            if record is not None:
                records[run_id] = record
        return records

    async def failed_run_ids(self, limit: int) -> list[str]:
        """Failed runs of every partition, newest first (kept as long as their hashes)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in self.config.partition_ids:
                pipe.zrevrange(self.keyspace.failed(partition), 0, limit - 1, withscores=True)
            rows = await pipe.execute()
        newest = sorted((item for row in rows for item in row), key=lambda i: i[1], reverse=True)
        return [_text(run_id) for run_id, _ in newest[:limit]]

    async def list_runs(self, query: ListQuery) -> ListPage:
        """One page of runs, newest first (O(page) per partition: an index read in order,
        filters applied to at most ``query.budget`` entries per partition)."""
        pages = [await self._list_partition(p, query) for p in self.config.partition_ids]
        stops = [page.stop for page in pages if page.stop is not None]
        floor = max(stops) if stops else None
        found = sorted(
            (item for page in pages for item in page.records if floor is None or item[0] > floor),
            key=lambda item: item[0],
            reverse=True,
        )
        records = [record for _, record in found[: query.limit]]
        if len(found) >= query.limit:
            cursor: tuple[int, str] | None = found[query.limit - 1][0]
        else:
            cursor = floor
        return ListPage(records, cursor)

    async def _list_partition(self, partition: int, query: ListQuery) -> _PartitionPage:
        indexes = query.indexes(self.keyspace, partition)
        top, after = "+inf", ""
        if query.cursor is not None:
            top, after = str(query.cursor[0]), query.cursor[1]
        before = query.created_before
        if before is not None and (query.cursor is None or before < query.cursor[0]):
            top, after = str(before), ""
        bottom = "-inf" if query.created_after is None else str(query.created_after)
        found: list[tuple[tuple[int, str], RunRecord]] = []
        examined = 0
        batch = min(max(2 * query.limit, 20), query.budget, 200)
        while True:
            reply = await self._scripts(
                "list_runs",
                [self.keyspace.clock(partition)],
                [
                    *self._header.for_partition(partition),
                    top,
                    after,
                    bottom,
                    batch,
                    len(_RECORD_FIELDS),
                    *_RECORD_FIELDS,
                    *indexes,
                ],
            )
            more, last_score, last_id = int(reply[0]), _text(reply[1]), _text(reply[2])
            width = 2 + len(_RECORD_FIELDS)
            for i in range(3, len(reply), width):
                run_id, created = _text(reply[i]), int(float(_text(reply[i + 1])))
                record = _record(run_id, reply[i + 2 : i + width])
                if record is not None and query.matches(record):
                    found.append(((created, run_id), record))
            if last_id:
                examined += batch
                top, after = str(int(float(last_score))), last_id
            if not more or not last_id:
                return _PartitionPage(found, None)
            if len(found) >= query.limit or examined >= query.budget:
                # Stopped early: nothing below this position was looked at.
                return _PartitionPage(found, (int(top), after))

    # --- change ---------------------------------------------------------------------------
    async def cancel(self, run_id: str, reason: str) -> RunState | None:
        """Cancel a queued or running run. Returns the state it had (None: no such run);
        a final state means nothing changed."""
        error = ErrorInfo(type="cancelled", message=reason)
        before = await self._run_script(run_id, "cancel", error.model_dump_json())
        before = _text(before)
        return RunState(before) if before else None

    async def forget(self, record: RunRecord) -> RunState | None:
        """Delete an ended run before its TTL (its hash, stream, replay, listing entries,
        pending webhook delivery). Returns the state it had (None: no such run); a state
        that is not final means nothing was deleted."""
        partition = partition_of(record.run_id)
        indexes = self.run_indexes(partition, record.tenant, record.pipeline, record.metadata)
        before = _text(await self._run_script(record.run_id, "forget", *indexes))
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

    # --- webhooks -------------------------------------------------------------------------
    async def claim_webhooks(
        self, partition: int, lease_ms: int, count: int
    ) -> tuple[int, list[WebhookDelivery]]:
        """Due webhook deliveries of one partition, each taken for one attempt (due again
        after ``lease_ms`` unless :meth:`webhook_done` says how it went). Returns (Redis
        time ms, deliveries); a delivery whose run expired comes with attempt 0 (dropped)."""
        reply = await self._scripts(
            "webhook_claim",
            [self.keyspace.clock(partition)],
            [
                *self._header.for_partition(partition),
                lease_ms,
                count,
                len(_RECORD_FIELDS),
                *_RECORD_FIELDS,
            ],
        )
        width = 3 + len(_RECORD_FIELDS)
        deliveries = []
        for i in range(1, len(reply), width):
            run_id, attempt = _text(reply[i]), int(reply[i + 1])
            url = _text(reply[i + 2]) if reply[i + 2] else ""
            record = _record(run_id, reply[i + 3 : i + width]) if attempt else None
            deliveries.append(WebhookDelivery(run_id, attempt, url, record))
        return int(reply[0]), deliveries

    async def webhook_done(
        self,
        run_id: str,
        attempt: int,
        outcome: Literal["delivered", "failed", "retry"],
        delay_ms: int = 0,
    ) -> bool:
        """Record a delivery attempt's outcome; False if a later attempt holds it now."""
        return bool(int(await self._run_script(run_id, "webhook_done", attempt, outcome, delay_ms)))

    async def webhooks_pending(self) -> int:
        """Webhook deliveries not yet done, over every partition."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in self.config.partition_ids:
                pipe.zcard(self.keyspace.webhooks(partition))
            return sum(int(n) for n in await pipe.execute())

    # --- queues and pipelines -------------------------------------------------------------
    async def pipeline_stats(self, pipelines: Sequence[str]) -> list[PipelineStats]:
        """Queue figures per pipeline, summed over partitions (one call per partition)."""
        if not pipelines:
            return []
        totals = {p: [0, 0, 0, 0, -1.0, 0] for p in pipelines}
        now = 0
        for partition in self.config.partition_ids:
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
            [
                keyspace.workers,
                keyspace.pipelines,
                keyspace.pipelines_seen,
                keyspace.pipelines_forgotten,
            ],
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

    async def fail_forgotten(self, batch: int = 500) -> int:
        """End the runs of every pipeline the registry forgot (their queues, suspects and
        lapsed leases in each partition) with error type ``pipeline_unavailable``, then
        drop the names; a pipeline that came back meanwhile is left alone. Returns the
        runs ended."""
        keyspace = self.keyspace
        names = [_text(n) for n in await self.redis.zrange(keyspace.pipelines_forgotten, 0, -1)]
        total = 0
        for name in names:
            if await self.redis.hexists(keyspace.pipelines, name):  # type: ignore[misc]
                await self.redis.zrem(keyspace.pipelines_forgotten, name)
                continue
            error = ErrorInfo(
                type="pipeline_unavailable",
                message=f"no worker served pipeline {name!r} for "
                f"{self.config.pipeline_retention_ms / 1000:g} s (LANGSCALE_PIPELINE_RETENTION)",
            ).model_dump_json()
            for partition in self.config.partition_ids:
                while True:
                    ended = int(
                        await self._scripts(
                            "fail_unserved",
                            [keyspace.clock(partition)],
                            [*self._header.for_partition(partition), name, batch, error],
                        )
                    )
                    total += ended
                    # Until a call ends none: a run of a thread that ends lets the thread's
                    # next run onto the queue, which a later call finds.
                    if ended == 0:
                        break
            await self.redis.zrem(keyspace.pipelines_forgotten, name)
        return total

    async def _run_script(self, run_id: str, name: str, *args: Any) -> Any:
        partition = partition_of(run_id)
        return await self._scripts(
            name,
            [self.keyspace.run(run_id)],
            [*self._header.for_partition(partition), run_id, *args],
        )


def _record(run_id: str, row: Sequence[bytes | str | None]) -> RunRecord | None:
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
