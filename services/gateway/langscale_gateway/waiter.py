"""Wait for runs to end without polling Redis per request.

One pub/sub subscription per gateway process receives the id of every run that ends
(``Keyspace.finished_channel``) and wakes the requests waiting for it. A slow re-read of
state covers notices lost while the subscription reconnects, and a Redis outage is ridden
out within each wait's own deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from langscale.contract import RunRecord
from langscale.lifecycle import RunStore
from langscale.redis import UNAVAILABLE, with_retries

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0


class RunWaiter:
    def __init__(self, redis: Redis, runs: RunStore) -> None:
        self.redis = redis
        self.runs = runs
        self._events: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        channel = self.runs.keyspace.finished_channel
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    self._subscribed.set()
                    # Anything that ended while we were away: waiters re-read now.
                    self._wake_all()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            for event in self._events.get(message["data"].decode(), ()):
                                event.set()
            except UNAVAILABLE as error:
                logger.warning("run-finished subscription lost: %s", error)
                await asyncio.sleep(0.5)

    def _wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    async def wait(
        self, run_ids: Sequence[str], timeout: float, stop: asyncio.Event | None = None
    ) -> list[RunRecord | None]:
        """The runs' records once all have ended, or as they are when ``timeout`` passes
        (or ``stop`` is set). Rides out a Redis outage until the deadline, then raises."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        events = {run_id: asyncio.Event() for run_id in run_ids}
        for run_id, event in events.items():
            self._events[run_id].append(event)

        async def read(ids: Sequence[str]) -> list[RunRecord | None]:
            return await with_retries(
                lambda: self.runs.get_many(ids), deadline=deadline, what="wait for runs"
            )

        try:
            records = await read(run_ids)
            while True:
                pending = [
                    i for i, r in enumerate(records) if r is not None and not r.state.is_final
                ]
                remaining = deadline - loop.time()
                if not pending or remaining <= 0 or (stop is not None and stop.is_set()):
                    return records
                # Every pending run's notice (or the stop), or the recheck interval.
                waits: list[asyncio.Future[Any]] = [
                    asyncio.gather(*(events[run_ids[i]].wait() for i in pending))
                ]
                if stop is not None:
                    waits.append(asyncio.ensure_future(stop.wait()))
                try:
                    await asyncio.wait(
                        waits,
                        timeout=min(remaining, RECHECK_SECONDS),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    for task in waits:
                        task.cancel()
                for i in pending:
                    events[run_ids[i]].clear()
                fresh = await read([run_ids[i] for i in pending])
                for i, record in zip(pending, fresh, strict=True):
                    records[i] = record
        finally:
            for run_id, event in events.items():
                listeners = self._events.get(run_id)
                if listeners is not None:
                    listeners.remove(event)
                    if not listeners:
                        del self._events[run_id]
