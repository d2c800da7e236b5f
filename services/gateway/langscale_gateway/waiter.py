"""Wait for runs to end without polling Redis per request.

One pub/sub subscription per gateway process receives the id of every run that ends
(``keys.RUN_FINISHED_CHANNEL``) and wakes the requests waiting for it. A slow re-read of
state covers notices lost while the subscription reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from langscale import keys
from langscale.contract import RunRecord
from langscale.runs import RunStore

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
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(keys.RUN_FINISHED_CHANNEL)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            for event in self._events.get(message["data"].decode(), ()):
                                event.set()
            except (RedisError, OSError) as error:
                logger.warning("run-finished subscription lost: %s", error)
                await asyncio.sleep(0.5)

    async def wait(self, run_ids: Sequence[str], timeout: float) -> list[RunRecord | None]:
        """The runs' records once all have ended, or as they are when ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        events = {run_id: asyncio.Event() for run_id in run_ids}
        for run_id, event in events.items():
            self._events[run_id].append(event)
        try:
            records = await self.runs.get_many(run_ids)
            while True:
                pending = [
                    i for i, r in enumerate(records) if r is not None and not r.state.is_final
                ]
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    return records
                waits = [asyncio.create_task(events[run_ids[i]].wait()) for i in pending]
                try:
                    await asyncio.wait(waits, timeout=min(remaining, RECHECK_SECONDS))
                finally:
                    for task in waits:
                        task.cancel()
                fresh = await self.runs.get_many([run_ids[i] for i in pending])
                for i, record in zip(pending, fresh, strict=True):
                    records[i] = record
        finally:
            for run_id, event in events.items():
                listeners = self._events.get(run_id)
                if listeners is not None:
                    listeners.remove(event)
                    if not listeners:
                        del self._events[run_id]
