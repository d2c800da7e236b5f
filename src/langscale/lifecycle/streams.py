"""Reading a run's events honestly, with a bounded number of Redis connections.

A run's stream numbers its events 1, 2, 3... (entry ids ``<n>-0``, see ``_prelude.lua``),
so a reader always knows what it missed: when the events after its position were trimmed
(``LANGSCALE_STREAM_MAX_LEN``) or the stream expired (``LANGSCALE_STREAM_TTL``), it gets a
``gap`` event saying how many it lost and where the run stands, never a stream with a hole
and a normal end. A run that was never streamed has no stream; its ``end`` is made from its
hash for a late reader.

Followers do not each hold a Redis connection: a reader catches up with non-blocking reads
(``XRANGE``) and, when it has read everything, waits on the process's :class:`StreamHub`,
which watches every followed stream of a partition with one blocking ``XREAD``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from langscale.contract import EventType, RunRecord
from langscale.keys import Keyspace, partition_of
from langscale.lifecycle.store import RunStore
from langscale.redis import ClusterClient, with_retries

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Longest single wait of a follower before it looks at the run again (expired? ended?).
RECHECK_SECONDS = 5.0
# How long a follower rides out an unreachable Redis before giving up (it can resume).
RIDE_OUT_SECONDS = 30.0
# Events fetched per read: a slow reader is fed at its own pace, never buffered here.
READ_COUNT = 100


@dataclass(frozen=True)
class Event:
    seq: int  # the event's number in the run's stream: the SSE id to resume after
    type: EventType
    data: str


def end_data(record: RunRecord) -> str:
    """The ``end`` event of a run, made from its record."""
    return json.dumps(
        {
            "state": record.state.value,
            "output": record.output,
            "error": record.error.model_dump() if record.error else None,
        }
    )


def gap_data(lost: int, record: RunRecord | None) -> str:
    data: dict[str, object] = {"lost": lost}
    if record is not None:
        data["state"] = record.state.value
        if record.state.is_final:
            data["output"] = record.output
            data["error"] = record.error.model_dump() if record.error else None
    return json.dumps(data)


async def follow(
    store: RunStore,
    hub: StreamHub,
    run_id: str,
    after: int = 0,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Event]:
    """A run's events numbered above ``after``, up to and including its ``end``; a ``gap``
    first wherever events this reader never had are gone. Returns at once when ``after`` is
    at or past the end; also when the run expires, or ``stop`` is set (between events).
    Rides out a Redis outage of up to RIDE_OUT_SECONDS."""

    async def ride(operation: Callable[[], Awaitable[T]]) -> T:
        deadline = asyncio.get_running_loop().time() + RIDE_OUT_SECONDS
        return await with_retries(operation, deadline=deadline, what="follow a run", stop=stop)

    start = await ride(lambda: store.follow(run_id))
    if start is None:
        return
    if start.state.is_final and after >= start.last_seq and start.last_seq > 0:
        return  # resumed at (or after) its end
    if not start.has_stream:
        # Ended and never streamed or followed: its end comes from its hash, as event 1.
        record = await ride(lambda: store.get(run_id))
        if record is not None and after < 1:
            yield Event(1, EventType.END, end_data(record))
        return
    while stop is None or not stop.is_set():
        position = after

        def read(position: int = position) -> Awaitable[list[tuple[int, EventType, str]]]:
            return store.read_events(run_id, position, READ_COUNT)

        events = await ride(read)
        for seq, event_type, data in events:
            if seq > after + 1:
                yield Event(seq - 1, EventType.GAP, gap_data(seq - after - 1, None))
            yield Event(seq, event_type, data)
            after = seq
            if event_type is EventType.END:
                return
        if events:
            continue
        # Nothing stored above `after`: either no new event yet, or they are gone. (Read
        # the number first: events written after the read above are not a gap.)
        last = await ride(lambda: store.last_seq(run_id))
        if last > after:
            arrived = await ride(read)
            if arrived:
                continue
            record = await ride(lambda: store.get(run_id))
            yield Event(last, EventType.GAP, gap_data(last - after, record))
            if record is None or record.state.is_final:
                if record is not None:
                    yield Event(last, EventType.END, end_data(record))
                return
            after = last
            continue
        if not await hub.wait(run_id, after, RECHECK_SECONDS, stop):
            if stop is not None and stop.is_set():
                return
            if await ride(lambda: store.get(run_id)) is None:
                return  # expired while we waited


@dataclass
class _Watched:
    after: int  # the lowest position any waiter of this stream has read to
    waiters: set[asyncio.Future[None]] = field(default_factory=set)


class _PartitionReader:
    """One blocking XREAD over every followed stream of a partition, on its own connection.

    ``open`` gives that connection and a client of the same Redis node to send the CLIENT
    UNBLOCK that makes the read take a new stream in at once; after an error both are
    opened again (on a cluster the partition may have moved to another node)."""

    def __init__(self, open: Callable[[], Awaitable[tuple[Redis, Redis]]]) -> None:
        self._open = open
        self._unblocker: Redis | None = None
        self._streams: dict[str, _Watched] = {}
        self._changed = asyncio.Event()
        self._client_id: int | None = None
        self._blocked = False
        self._task: asyncio.Task[None] | None = None
        self._unblocking: asyncio.Task[None] | None = None

    def watch(self, stream: str, after: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watched = self._streams.get(stream)
        if watched is None:
            self._streams[stream] = watched = _Watched(after)
            self._interrupt()
        elif after < watched.after:
            watched.after = after
            self._interrupt()
        watched.waiters.add(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stream-hub")
        return future

    def unwatch(self, stream: str, future: asyncio.Future[None]) -> None:
        watched = self._streams.get(stream)
        if watched is not None:
            watched.waiters.discard(future)
            if not watched.waiters:
                del self._streams[stream]

    def _interrupt(self) -> None:
        """A new stream to watch: end the blocking read so the next one includes it."""
        self._changed.set()
        if self._blocked and self._client_id is not None and self._unblocking is None:
            self._unblocking = asyncio.create_task(self._unblock(self._client_id))

    async def _unblock(self, client_id: int) -> None:
        try:
            with contextlib.suppress(RedisError, OSError):
                if self._unblocker is not None:
                    await self._unblocker.client_unblock(client_id)
        finally:
            self._unblocking = None

    async def _run(self) -> None:
        redis: Redis | None = None
        try:
            while self._streams:
                self._changed.clear()
                try:
                    if redis is None:
                        self._client_id = None
                        redis, self._unblocker = await self._open()
                    if self._client_id is None:
                        self._client_id = int(await redis.client_id())
                    wanted: dict[Any, Any] = {s: f"{w.after}-0" for s, w in self._streams.items()}
                    self._blocked = True
                    try:
                        reply = await redis.xread(
                            wanted, count=1, block=int(RECHECK_SECONDS * 1000)
                        )
                    finally:
                        self._blocked = False
                except (RedisError, OSError) as error:
                    logger.warning("stream hub read failed (%s); retrying", error)
                    self._client_id = None
                    if redis is not None:
                        with contextlib.suppress(RedisError, OSError):
                            await redis.aclose()
                        redis = None
                    self._wake_all()
                    await asyncio.sleep(0.5)
                    continue
                for stream, _ in reply or ():
                    self._wake(stream.decode() if isinstance(stream, bytes) else stream)
        finally:
            self._client_id = None
            if redis is not None:
                await redis.aclose()

    def _wake(self, stream: str) -> None:
        watched = self._streams.pop(stream, None)
        if watched is not None:
            for future in watched.waiters:
                if not future.done():
                    future.set_result(None)

    def _wake_all(self) -> None:
        for stream in list(self._streams):
            self._wake(stream)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StreamHub:
    """Wakes followers of run streams when events arrive: one connection per partition
    with followers, however many followers there are.

    ``connect`` makes a client with a connection of its own (a blocking read must not hold
    one of the pool's); ``redis`` (the pool) sends the CLIENT UNBLOCK that makes a reader
    take a new stream in at once. On a Redis Cluster both go to the node serving the
    partition (:meth:`ClusterClient.dedicated`) and ``connect`` is not used."""

    def __init__(self, redis: Redis, keyspace: Keyspace, connect: Callable[[], Redis]) -> None:
        self.redis = redis
        self.keyspace = keyspace
        self._connect = connect
        self._readers: dict[int, _PartitionReader] = {}

    def _reader(self, partition: int) -> _PartitionReader:
        if partition not in self._readers:
            self._readers[partition] = _PartitionReader(self._opener(partition))
        return self._readers[partition]

    def _opener(self, partition: int) -> Callable[[], Awaitable[tuple[Redis, Redis]]]:
        redis = self.redis
        if isinstance(redis, ClusterClient):
            key = self.keyspace.clock(partition)  # any key of the partition: its slot
            return lambda: redis.dedicated(key)

        async def open() -> tuple[Redis, Redis]:
            return self._connect(), redis

        return open

    async def wait(
        self, run_id: str, after: int, timeout: float, stop: asyncio.Event | None = None
    ) -> bool:
        """Wait until the run's stream may hold events numbered above ``after``. False when
        ``timeout`` passed (or ``stop`` was set) first."""
        stream = self.keyspace.events(run_id)
        reader = self._reader(partition_of(run_id))
        future = reader.watch(stream, after)
        waits: list[asyncio.Future[Any]] = [future]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            return future.done() and not future.cancelled()
        finally:
            for wait in waits[1:]:
                wait.cancel()
            reader.unwatch(stream, future)

    async def close(self) -> None:
        for reader in self._readers.values():
            await reader.close()
