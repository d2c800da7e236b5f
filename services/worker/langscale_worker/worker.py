"""The arq worker, with prompt pickup and short leases.

Plain arq polls its queue every ``poll_delay``, claims jobs one at a time with a WATCH
transaction each, and leaves running jobs in the ready part of the queue, so every poll
re-reads them: at 0.5 s job latency it completes about half the ideal throughput
(DESIGN.md). It also holds a running job for the job timeout + 10 s, so the jobs of a worker
killed with SIGKILL stall that long. This worker keeps arq's job format, run loop and retry
rules, and changes how work is picked up and held:

- it waits on an event set by a Redis pub/sub message (the gateway publishes one per
  enqueue) or by one of its jobs finishing (a slot is free), with the poll interval only as
  a fallback, so an idle worker costs nothing and a busy one refills a slot at once;
- it claims up to its free slots in one Lua call, and a claimed job's score in the queue
  becomes the end of its **lease** (also its in-progress key's expiry, and its entry in
  ``keys.leases_key``): held jobs leave the ready range, so claiming never re-reads them;
- it renews its leases every third of the lease; a dead worker stops renewing, its jobs'
  scores fall due and any live worker claims them within one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from arq.connections import create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import deserialize_job_raw
from arq.utils import timestamp_ms
from arq.worker import Retry, Worker
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# KEYS[1] queue, KEYS[2] leases. ARGV: now_ms, slots, in-progress prefix, lease_ms,
# job prefix, run prefix. Due jobs are never held (a held job's score is its lease end),
# so the first `slots` due jobs are all free. Returns a flat list
# [job_id, score, payload, attempts so far, ...] of the jobs claimed; a job whose payload
# is gone (cancelled while queued) comes back with an empty payload, to be released.
_CLAIM_READY_JOBS = """
local lease_end = tonumber(ARGV[1]) + tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES',
                       'LIMIT', 0, tonumber(ARGV[2]))
local claimed = {}
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('SET', ARGV[3] .. id, '1', 'PX', ARGV[4])
  redis.call('ZADD', KEYS[1], lease_end, id)
  redis.call('ZADD', KEYS[2], lease_end, id)
  claimed[#claimed + 1] = id
  claimed[#claimed + 1] = due[i + 1]
  claimed[#claimed + 1] = redis.call('GET', ARGV[5] .. id) or ''
  claimed[#claimed + 1] = redis.call('HGET', ARGV[6] .. id, 'attempts') or '0'
end
return claimed
"""

# KEYS[1] queue, KEYS[2] leases. ARGV: job id, in-progress key, job key.
# A job that needs no finishing write (already ended, cancelled) leaves the queue.
_RELEASE_JOB = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', ARGV[2], ARGV[3])
return 1
"""

# KEYS[1] queue, KEYS[2] leases. ARGV: lease_ms, in-progress prefix, now_ms, job ids...
# Extends this worker's leases; a job that already ended (no in-progress key) is left.
# Every live worker also sweeps leases that lapsed (their worker died): such a job is due
# again, and goes to the front of the queue, ahead of runs queued after it first started.
_RENEW_LEASES = """
local now = tonumber(ARGV[3])
local lease_end = now + tonumber(ARGV[1])
for i = 4, #ARGV do
  if redis.call('PEXPIRE', ARGV[2] .. ARGV[i], ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[1], 'XX', lease_end, ARGV[i])
    redis.call('ZADD', KEYS[2], 'XX', lease_end, ARGV[i])
  end
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
if #lapsed > 0 then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local front = head[2] and tonumber(head[2]) - 1 or now
  for _, id in ipairs(lapsed) do
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) < now and tonumber(score) > front then
      redis.call('ZADD', KEYS[1], 'XX', front, id)
    end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
end
return #lapsed
"""


class LangscaleWorker(Worker):
    def __init__(
        self,
        *args: Any,
        wake_channel: str,
        leases_key: str,
        lease_seconds: float,
        run_key_prefix: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.leases_key = leases_key
        self.run_key_prefix = run_key_prefix
        self._claimed: dict[str, tuple[bytes, int]] = {}  # job id -> (payload, attempts)
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
        self._release = self.pool.register_script(_RELEASE_JOB)
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
            try:
                await self._renew(
                    keys=[self.queue_name, self.leases_key],
                    args=[self.lease_ms, in_progress_key_prefix, timestamp_ms(), *self.tasks],
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
                    job_key_prefix,
                    self.run_key_prefix,
                ],
            )
            for index in range(0, len(claimed), 4):
                job_id = claimed[index].decode()
                self._claimed[job_id] = (claimed[index + 2], int(claimed[index + 3]))
                self._start_claimed(job_id, int(float(claimed[index + 1])))
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        await self.heart_beat()

    def _start_claimed(self, job_id: str, score: int) -> None:
        # Slots are counted with job_counter before claiming; arq's semaphore only guards
        # its own start_jobs, which this worker does not use.
        self.job_counter += 1
        task = self.loop.create_task(self.run_job(job_id, score))
        task.add_done_callback(lambda done: self._job_done(job_id, done))
        self.tasks[job_id] = task

    async def run_job(self, job_id: str, score: int) -> None:
        """One job, lean: the claim already fetched its payload and attempts, and the job
        function's own Lua calls start and end the run, take the job off the queue and
        release its lease (what arq's run_job/finish_job do in four more round trips)."""
        payload, attempts = self._claimed.pop(job_id, (b"", 0))
        if not payload:  # cancelled while queued, or expired
            await self.release_job(job_id)
            return
        try:
            function_name, args, kwargs, _, _ = deserialize_job_raw(
                payload, deserializer=self.job_deserializer
            )
            function = self.functions[function_name]
        except Exception:
            logger.exception("job %s cannot be read; dropping it", job_id)
            await self.release_job(job_id)
            return
        if attempts >= self.max_tries:  # crashed or stopped on every attempt so far
            await self.attempts_exhausted(job_id)
            return
        ctx = {**self.ctx, "job_id": job_id, "job_try": attempts + 1, "score": score}
        try:
            result = await function.coroutine(ctx, *args, **kwargs)
        except Retry:
            return  # the job put itself back on the queue, due after its backoff
        except asyncio.CancelledError:
            return  # the worker is stopping: the job put itself back on the queue
        if isinstance(result, dict) and result.get("release"):
            await self.release_job(job_id)

    async def attempts_exhausted(self, job_id: str) -> None:
        await self.release_job(job_id)

    async def release_job(self, job_id: str) -> None:
        await self._release(
            keys=[self.queue_name, self.leases_key],
            args=[job_id, in_progress_key_prefix + job_id, job_key_prefix + job_id],
        )

    def _job_done(self, job_id: str, task: asyncio.Task[Any]) -> None:
        """Free the slot and look for more work at once (O(1) per job, whatever C)."""
        self.job_counter -= 1
        if self.tasks.get(job_id) is task:
            del self.tasks[job_id]
        if not task.cancelled() and task.exception() is not None:
            logger.error("job %s crashed in the worker itself", job_id, exc_info=task.exception())
        self._wake.set()
