"""The arq worker, with prompt pickup.

Plain arq polls its queue every ``poll_delay`` and claims jobs one at a time with a WATCH
transaction per job, re-reading every in-progress job on each poll: at 0.5 s job latency it
completes about half the ideal throughput (DESIGN.md). This worker keeps arq's job format,
run loop and retry rules, and changes how work is picked up:

- it waits on an event set by a Redis pub/sub message (the gateway publishes one per
  enqueue) or by a job finishing (a slot is free), with the poll interval only as a
  fallback, so an idle worker costs nothing and a busy one refills a slot at once;
- it claims up to the number of free slots in one Lua call (``SET NX PX`` of arq's
  in-progress key for each ready job, skipping jobs other workers hold);
- it holds each running job by a short **lease** (the in-progress key's expiry, and the job's
  score in ``keys.leases_key``) that it renews every third of the lease, instead of arq's
  job timeout + 10 s: the jobs of a worker that died go back to others within one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from arq.connections import create_pool
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# KEYS[1] queue, KEYS[2] leases. ARGV: now_ms, slots, in-progress prefix, lease_ms, page.
# Returns a flat list [job_id, score, ...] of the jobs this worker now holds.
_CLAIM_READY_JOBS = """
local claimed = {}
local lease_end = tonumber(ARGV[1]) + tonumber(ARGV[4])
local want = tonumber(ARGV[2]) * 2
local page = tonumber(ARGV[5])
local offset = 0
while #claimed < want do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES',
                           'LIMIT', offset, page)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    if redis.call('SET', ARGV[3] .. batch[i], '1', 'NX', 'PX', ARGV[4]) then
      redis.call('ZADD', KEYS[2], lease_end, batch[i])
      claimed[#claimed + 1] = batch[i]
      claimed[#claimed + 1] = batch[i + 1]
      if #claimed >= want then break end
    end
  end
  offset = offset + page
end
return claimed
"""
_CLAIM_PAGE = 500

# KEYS[1] leases. ARGV: lease_ms, in-progress prefix, now_ms, job ids...
# Extends this worker's leases; a lease another worker took over (ours lapsed) is left.
_RENEW_LEASES = """
local lease_end = tonumber(ARGV[3]) + tonumber(ARGV[1])
for i = 4, #ARGV do
  if redis.call('PEXPIRE', ARGV[2] .. ARGV[i], ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[1], 'XX', lease_end, ARGV[i])
  end
end
-- leases of workers that died: their jobs are ready again
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
return 1
"""


class LangscaleWorker(Worker):
    def __init__(
        self, *args: Any, wake_channel: str, leases_key: str, lease_seconds: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.leases_key = leases_key
        self.lease_ms = int(lease_seconds * 1000)
        self.last_iteration = time.monotonic()  # for the per-pod liveness probe
        self._wake = asyncio.Event()
        self._claim: Any = None
        self._renew: Any = None
        # Pub/sub channel -> handler of each message's data, on one connection.
        self.subscriptions: dict[str, Callable[[bytes], None]] = {
            wake_channel: lambda _: self._wake.set()
        }

    async def main(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        self._claim = self.pool.register_script(_CLAIM_READY_JOBS)
        self._renew = self.pool.register_script(_RENEW_LEASES)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        helpers = [asyncio.create_task(self._listen()), asyncio.create_task(self._keep_leases())]
        try:
            while True:
                self._wake.clear()
                try:
                    await self._poll_iteration()
                except (RedisError, OSError) as error:
                    # Redis restarting or unreachable: keep running jobs, try again.
                    logger.warning("queue poll failed: %s", error)
                self.last_iteration = time.monotonic()
                if self.burst and not self.tasks and not await self._ready_jobs():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_delay_s)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _keep_leases(self) -> None:
        """Renew the lease of every job this worker runs, every third of the lease."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            running = [job_id for job_id, task in self.tasks.items() if not task.done()]
            try:
                await self._renew(
                    keys=[self.leases_key],
                    args=[self.lease_ms, in_progress_key_prefix, timestamp_ms(), *running],
                )
            except (RedisError, OSError) as error:
                logger.warning("lease renewal failed: %s", error)

    async def _ready_jobs(self) -> int:
        return int(await self.pool.zcount(self.queue_name, "-inf", timestamp_ms()))

    async def _listen(self) -> None:
        """Dispatch pub/sub messages (enqueue wake-ups, ...); reconnect if Redis drops us."""
        while True:
            try:
                async with self.pool.pubsub() as pubsub:
                    await pubsub.subscribe(*self.subscriptions)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.subscriptions[message["channel"].decode()](message["data"])
            except (RedisError, OSError) as error:
                logger.warning("pub/sub subscription lost (%s); polling until it is back", error)
                await asyncio.sleep(self.poll_delay_s)

    async def _poll_iteration(self) -> None:
        free_slots = self.max_jobs - self.job_counter
        if self.allow_pick_jobs and free_slots > 0:
            claimed = await self._claim(
                keys=[self.queue_name, self.leases_key],
                args=[
                    timestamp_ms(),
                    free_slots,
                    in_progress_key_prefix,
                    self.lease_ms,
                    _CLAIM_PAGE,
                ],
            )
            for index in range(0, len(claimed), 2):
                self._start_claimed(claimed[index].decode(), int(float(claimed[index + 1])))
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # surfaces errors in run_job itself
        await self.heart_beat()

    def _start_claimed(self, job_id: str, score: int) -> None:
        # Slots are counted with job_counter before claiming; arq's semaphore only guards
        # its own start_jobs, which this worker does not use.
        self.job_counter += 1
        task = self.loop.create_task(self.run_job(job_id, score))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job_id] = task

    def _release_sem_dec_counter_on_complete(self) -> None:
        self.job_counter -= 1
        self._wake.set()  # a slot is free: look for more work now
