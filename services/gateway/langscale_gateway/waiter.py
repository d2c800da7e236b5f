"""Wait for runs to end without polling Redis per request.

One pub/sub subscription per gateway process receives the id of every run that ends
(``Keyspace.finished_channel``) and wakes the requests waiting for it; the notice carries
the records of runs a worker ended, so those need no read. A slow re-read of
state covers notices lost while the subscription reconnects, and a Redis outage is ridden
out within each wait's own deadline. A wait costs its request no extra task: it sleeps on
one event that the notice, the client leaving or the gateway's drain sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from langscale.contract import RunRecord
from langscale.lifecycle import RunStore
from langscale.redis import UNAVAILABLE, with_retries

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0
# Notices of runs nobody here waited for yet, kept for a request whose run ended before it
# began to wait (a worker can end a run within the submit's own round trip): the latest.
RECENT_NOTICES = 4096


class RunWaiter:
    """``channels``: more channels of the same subscription, each with what to do when a
    message arrives (e.g. wake the webhook deliverer)."""

    def __init__(
        self,
        redis: Redis,
        runs: RunStore,
        drained: asyncio.Event,
        channels: dict[str, Callable[[], None]] | None = None,
    ) -> None:
        self.redis = redis
        self.runs = runs
        self.drained = drained  # set when the gateway's drain window ends: every wait ends
        self.channels = channels or {}
        self._wakes: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._ended: dict[str, RunRecord] = {}  # waited-for runs' records from notices
        self._recent: OrderedDict[str, str] = OrderedDict()  # run id -> its end notice
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._drain())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> None:
        channel = self.runs.keyspace.finished_channel
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(channel, *self.channels)
                    self._subscribed.set()
                    self._wake_all()  # whatever ended while we were away: re-read now
                    for notify in self.channels.values():
                        notify()
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        other = self.channels.get(message["channel"].decode())
                        if other is not None:
                            other()
                            continue
                        self._ended_notice(message["data"].decode())
            except UNAVAILABLE as error:
                logger.warning("run-finished subscription lost: %s", error)
                await asyncio.sleep(0.5)

    def _ended_notice(self, notice: str) -> None:
        """Wake the waits for the runs a script ended (the notice's ids, space separated),
        keeping the records the notice carries of those waited for here."""
        ids, _, _ = notice.partition("\n")
        records: dict[str, RunRecord] | None = None
        for run_id in ids.split():
            wakes = self._wakes.get(run_id)
            if not wakes:
                self._recent[run_id] = notice
                if len(self._recent) > RECENT_NOTICES:
                    self._recent.popitem(last=False)
                continue
            if records is None:
                records = self.runs.finished_records(notice)
            if run_id in records:
                self._ended[run_id] = records[run_id]
            for wake in wakes:
                wake.set()

    def _caught_up(self, run_ids: Sequence[str]) -> bool:
        """Take the records of runs that ended before their wait began from the notices
        kept for them; False if such a notice did not carry its run's record."""
        for run_id in run_ids:
            notice = self._recent.pop(run_id, None)
            if notice is None:
                continue
            record = self.runs.finished_records(notice).get(run_id)
            if record is None:
                return False
            self._ended[run_id] = record
        return True

    async def _drain(self) -> None:
        await self.drained.wait()
        self._wake_all()

    def _wake_all(self) -> None:
        for wakes in self._wakes.values():
            for wake in wakes:
                wake.set()

    async def wait(
        self,
        run_ids: Sequence[str],
        timeout: float,
        *,
        queued: bool = False,
        wake: asyncio.Event | None = None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> list[RunRecord | None]:
        """The runs' records once all have ended, or as they are when ``timeout`` passes,
        the drain ends or ``give_up()`` (checked whenever ``wake`` is set). ``queued``: the
        runs were just enqueued, so the first read can wait for a notice. Rides out a Redis
        outage until the deadline, then raises."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wake = wake or asyncio.Event()
        for run_id in run_ids:
            self._wakes[run_id].add(wake)

        async def read(ids: Sequence[str]) -> list[RunRecord | None]:
            return await with_retries(
                lambda: self.runs.get_many(ids), deadline=deadline, what="wait for runs"
            )

        try:
            records: list[RunRecord | None] = [None] * len(run_ids)
            pending = list(range(len(run_ids)))
            if queued and not self._caught_up(run_ids):
                queued = False  # one ended before this wait, its notice without a record
            if not queued:
                records = await read(run_ids)
                pending = _unfinished(records, pending)
            while pending:
                remaining = deadline - loop.time()
                if remaining <= 0 or give_up() or self.drained.is_set():
                    if queued and records == [None] * len(run_ids):
                        records = await read(run_ids)  # never read yet
                    break
                if not any(run_ids[i] in self._ended for i in pending):
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(remaining, RECHECK_SECONDS)):
                            await wake.wait()
                # The notice carried the records of runs a worker ended: read the others.
                unread = [i for i in pending if run_ids[i] not in self._ended]
                for i in pending:
                    records[i] = self._ended.get(run_ids[i], records[i])
                if unread:
                    fresh = await read([run_ids[i] for i in unread])
                    for i, record in zip(unread, fresh, strict=True):
                        records[i] = record
                pending = _unfinished(records, pending)
            return records
        finally:
            for run_id in run_ids:
                wakes = self._wakes.get(run_id)
                if wakes is not None:
                    wakes.discard(wake)
                    if not wakes:
                        del self._wakes[run_id]
                        self._ended.pop(run_id, None)


def _unfinished(records: list[RunRecord | None], indexes: list[int]) -> list[int]:
    """Those of ``indexes`` whose run exists and has not ended."""
    return [i for i in indexes if (r := records[i]) is not None and not r.state.is_final]
