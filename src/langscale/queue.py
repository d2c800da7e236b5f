"""Queue figures for admission control, ``GET /v1/queue``, metrics and autoscaling.

One Lua call, O(log N) in the queue's length: ready and deferred jobs are counted by score
in the queue's sorted set, running ones by live lease (``keys.leases_key``), so the cost of
a reading does not grow with the backlog or the fleet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from langscale import keys
from langscale.contract import now_ms

# Seconds of per-second completion counters averaged for the drain rate.
RATE_WINDOW = 10

# KEYS: queue, leases. ARGV: now ms, completed-counter prefix, rate window seconds.
# Returns {ready, later, in progress, oldest ready score or -1, completed in window}.
# A held job's score is its lease end (langscale_worker.worker), so due = ready exactly and
# the jobs scored later are the held ones plus the deferred ones.
_QUEUE_STATS = """
local now = tonumber(ARGV[1])
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', now)
local later = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local running = redis.call('ZCOUNT', KEYS[2], now, '+inf')
local head = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
local oldest = head[2] or '-1'
local second = tonumber(redis.call('TIME')[1])
local completed = 0
for s = second - tonumber(ARGV[3]), second - 1 do
  completed = completed + tonumber(redis.call('GET', ARGV[2] .. s) or '0')
end
return {ready, later, running, oldest, completed}
"""


@dataclass(frozen=True)
class QueueStats:
    queue: str
    ready: int  # due and not running: waiting for a worker slot
    deferred: int  # scheduled later (retry backoff)
    in_progress: int  # held by a live worker lease
    oldest_ready_age_seconds: float
    completed_per_second: float  # runs that ended, averaged over RATE_WINDOW seconds

    @property
    def backlog(self) -> int:
        """Ready + running: the work a fleet must hold; the autoscaling metric."""
        return self.ready + self.in_progress

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "backlog": self.backlog}


class QueueMonitor:
    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.queue_name = queue_name
        self._stats = redis.register_script(_QUEUE_STATS)

    async def read(self) -> QueueStats:
        now = now_ms()
        ready, later, running, oldest, completed = await self._stats(
            keys=[self.queue_name, keys.leases_key(self.queue_name)],
            args=[now, keys.completed_key_prefix(self.queue_name), RATE_WINDOW],
        )
        oldest_score = float(oldest)
        return QueueStats(
            queue=self.queue_name,
            ready=int(ready),
            deferred=max(0, int(later) - int(running)),
            in_progress=int(running),
            oldest_ready_age_seconds=max(0.0, (now - oldest_score) / 1000)
            if oldest_score >= 0
            else 0.0,
            completed_per_second=int(completed) / RATE_WINDOW,
        )
