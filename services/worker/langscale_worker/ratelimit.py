"""A provider/model budget shared by every worker process, enforced in Redis.

Two layers (docs/outgoing-calls.md):

- :class:`SharedBudget`: GCRA (a token bucket kept as one "theoretical arrival time") for
  requests and for tokens, in one Lua script on Redis server time (``TIME``), so clock
  skew between pods does not matter and N replicas together stay within the limit. A caller
  *reserves* a slot: the script answers how long to wait before sending (at most the
  lookahead), so a waiting run sleeps exactly once instead of polling Redis. A provider's
  429 sets "blocked until T" in the same hash; every reservation honours it.
- :class:`FairGate`: one per budget per process. Runs queue here by tenant; the gate makes
  the reservations one after the other and hands each slot to the tenant with the smallest
  start-time-fair-queuing tag, so a tenant's burst cannot starve the others. Only the gate
  talks to Redis: one call per slot however many runs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from langscale.limits import RateLimit
from langscale_worker.retries import retry_after_seconds

logger = logging.getLogger(__name__)

_US = 1_000_000

# KEYS[1]: the budget hash {r: request TAT, t: token TAT, b: blocked until} (µs, server time).
# ARGV: request interval µs (0: no request limit), request tolerance µs, token interval µs
# (0: none), token tolerance µs, tokens, lookahead µs, key ttl ms.
# Returns {granted 0|1, µs: wait before sending if granted, else retry after; blocked 0|1}.
#
# GCRA: a request of cost c may go at the first time s >= now with TAT - s <= tau - c*I
# (the bucket has room); then TAT = max(TAT, s) + c*I. A cost above tau waits for a full
# bucket and leaves a debt. Both dimensions must agree on s, then both are charged at s.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'r', 't', 'b')
local blocked = tonumber(h[3]) or 0
if blocked > now then return {0, blocked - now, 1} end
local ri, rtau = tonumber(ARGV[1]), tonumber(ARGV[2])
local ti, ttau, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local rtat = math.max(tonumber(h[1]) or now, now)
local ttat = math.max(tonumber(h[2]) or now, now)
local start = now
if ri > 0 then start = math.max(start, rtat - math.max(rtau - ri, 0)) end
if ti > 0 and cost > 0 then start = math.max(start, ttat - math.max(ttau - cost * ti, 0)) end
local wait = start - now
if wait > tonumber(ARGV[6]) then return {0, wait - tonumber(ARGV[6]), 0} end
if ri > 0 then redis.call('HSET', KEYS[1], 'r', math.max(rtat, start) + ri) end
if ti > 0 and cost > 0 then
  redis.call('HSET', KEYS[1], 't', math.max(ttat, start) + cost * ti)
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return {1, wait, 0}
"""

# KEYS[1]: budget hash. ARGV: token interval µs, token delta (actual - estimated), ttl ms.
# A refund never makes the bucket fuller than full (a TAT before now is the same as now).
_CORRECT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = math.max(tonumber(redis.call('HGET', KEYS[1], 't')) or now, now)
tat = math.max(tat + tonumber(ARGV[2]) * tonumber(ARGV[1]), now)
redis.call('HSET', KEYS[1], 't', tat)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1]: budget hash. ARGV: block µs, ttl ms. Returns µs until the (possibly later) end.
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local b = math.max(tonumber(redis.call('HGET', KEYS[1], 'b')) or 0, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'b', b)
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[2]), math.ceil((b - now) / 1000)))
return b - now
"""


@dataclass(frozen=True)
class Reservation:
    granted: bool
    seconds: float  # granted: wait this long, then send; else: ask again after this long
    blocked: bool = False  # denied because the provider said 429 (or its headers did)


class SharedBudget:
    """One provider/model budget in Redis, shared by every process that names it."""

    def __init__(
        self,
        redis: Redis,
        key: str,
        limit: RateLimit,
        *,
        window: float = 60.0,
        burst: float = 0.01,
        lookahead: float = 0.5,
        block_max: float = 60.0,
    ) -> None:
        self.key = key  # keys.Keyspace.llm_rate of the provider/model
        self.limit = limit
        self.block_max = block_max
        self.lookahead = lookahead
        self._request_interval = window * _US / limit.rpm if limit.rpm else 0.0
        self._token_interval = window * _US / limit.tpm if limit.tpm else 0.0
        # Tolerance: how much may go at once; at least one request, so a bucket of
        # capacity C lets at most C + limit through in any window.
        self._request_tau = max(1.0, burst * limit.rpm) * self._request_interval
        self._token_tau = burst * limit.tpm * self._token_interval
        self._ttl_ms = int((window + lookahead) * 1000 * 2) + 1000
        self._reserve = redis.register_script(_RESERVE)
        self._correct = redis.register_script(_CORRECT)
        self._block = redis.register_script(_BLOCK)

    async def reserve(self, tokens: int = 0) -> Reservation:
        granted, micros, blocked = await self._reserve(
            keys=[self.key],
            args=[
                self._request_interval,
                self._request_tau,
                self._token_interval,
                self._token_tau,
                max(0, tokens),
                self.lookahead * _US,
                self._ttl_ms,
            ],
        )
        return Reservation(bool(granted), float(micros) / _US, bool(blocked))

    async def correct(self, delta_tokens: int) -> None:
        """Charge (or refund) the difference between reported and estimated tokens."""
        if delta_tokens and self._token_interval:
            await self._correct(
                keys=[self.key], args=[self._token_interval, delta_tokens, self._ttl_ms]
            )

    async def block(self, seconds: float) -> float:
        """Nobody sends until ``seconds`` (at most ``block_max``) from now (server time).
        Returns the seconds until the block ends, which may be later if someone blocked
        longer already."""
        seconds = min(max(0.0, seconds), self.block_max)
        micros = await self._block(keys=[self.key], args=[int(seconds * _US), self._ttl_ms])
        return float(micros) / _US


@dataclass
class LimiterStats:
    """In-process counters (Prometheus metrics come later; these are what they will read)."""

    granted: int = 0
    waited: int = 0  # grants that waited at all
    wait_seconds: float = 0.0
    denials: int = 0  # reservations refused (beyond the lookahead or blocked)
    blocks: int = 0  # 429s or header signals that blocked a budget
    waiting: int = 0  # runs queued in a gate now (a gauge)

    def snapshot(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class _Waiter:
    tenant: str
    tokens: int
    tag: float
    future: asyncio.Future[float]
    queued_at: float = field(default_factory=time.monotonic)


class FairGate:
    """Queues this process's callers of one budget and hands out its slots fairly.

    Start-time fair queuing: a caller of tenant t gets tag S = max(V, F_t), then
    F_t = S + 1 / w_t; the waiter with the smallest tag goes next and V becomes its tag.
    With weights 3:1, three of one tenant's calls go for each of the other's while both
    wait; a tenant alone gets the whole budget.
    """

    def __init__(
        self,
        budget: SharedBudget,
        weights: dict[str, float] | None = None,
        stats: LimiterStats | None = None,
    ) -> None:
        self.budget = budget
        self.weights = weights or {}
        self.stats = stats or LimiterStats()
        self._queues: dict[str, deque[_Waiter]] = {}
        self._finish: dict[str, float] = {}
        self._virtual = 0.0
        self._runner: asyncio.Task[None] | None = None

    async def acquire(self, tenant: str = "default", tokens: int = 0) -> float:
        """Wait for a slot; returns the seconds waited (queue plus reserved wait)."""
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        tag = max(self._virtual, self._finish.get(tenant, 0.0))
        self._finish[tenant] = tag + 1.0 / self.weights.get(tenant, 1.0)
        waiter = _Waiter(tenant, tokens, tag, loop.create_future())
        self._queues.setdefault(tenant, deque()).append(waiter)
        self.stats.waiting += 1
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        try:
            delay = await waiter.future
        finally:
            self.stats.waiting -= 1
        if delay > 0:
            await asyncio.sleep(delay)
        waited = time.monotonic() - started
        self.stats.granted += 1
        if waited > 0.001:
            self.stats.waited += 1
            self.stats.wait_seconds += waited
        return waited

    def _next(self) -> _Waiter | None:
        best: _Waiter | None = None
        for tenant, queue in list(self._queues.items()):
            while queue and queue[0].future.done():  # cancelled while waiting
                queue.popleft()
            if not queue:
                del self._queues[tenant]
                continue
            if best is None or queue[0].tag < best.tag:
                best = queue[0]
        return best

    async def _run(self) -> None:
        while (waiter := self._next()) is not None:
            try:
                reservation = await self.budget.reserve(waiter.tokens)
            except Exception as error:  # Redis trouble: fail the caller, keep serving
                self._queues[waiter.tenant].popleft()
                if not waiter.future.done():
                    waiter.future.set_exception(error)
                continue
            if reservation.granted:
                self._queues[waiter.tenant].popleft()
                self._virtual = waiter.tag
                if not waiter.future.done():
                    waiter.future.set_result(reservation.seconds)
                continue
            self.stats.denials += 1
            # Ask again when the next slot is within the lookahead; a little jitter keeps
            # the gates of many processes from asking in the same millisecond.
            await asyncio.sleep(reservation.seconds + random.uniform(0, 0.005))

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner


def parse_reset(value: str) -> float | None:
    """OpenAI's reset durations ("1s", "6m0s", "250ms", "0.5s") or plain seconds."""
    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    total, number = 0.0, ""
    index = 0
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        if unit not in units or not number:
            return None
        total += float(number) * units[unit]
        number = ""
        index += len(unit)
    return total if not number else None


def backoff_from_headers(headers: Any) -> float | None:
    """Seconds to block everyone for, from a response's rate-limit headers: the reset time
    when the remaining requests or tokens are (nearly) spent, else None."""
    if not headers:
        return None
    get = headers.get
    for dimension in ("requests", "tokens"):
        remaining, limit = (
            get(f"x-ratelimit-remaining-{dimension}"),
            get(f"x-ratelimit-limit-{dimension}"),
        )
        if remaining is None:
            continue
        try:
            left = float(remaining)
            total = float(limit) if limit is not None else 0.0
        except ValueError:
            continue
        # "Nearly spent": nothing or almost nothing left (1% of the limit, at least 1).
        if left <= max(1.0, 0.01 * total):
            reset = parse_reset(str(get(f"x-ratelimit-reset-{dimension}") or "1"))
            return reset if reset and reset > 0 else 1.0
    return None


def retry_after(error: BaseException) -> float | None:
    """Seconds a 429 error asks us to wait (retry-after-ms / Retry-After); None if the
    error is not a 429. 1 s when the provider gives no (readable) hint."""
    status = getattr(error, "status_code", None)
    response = getattr(error, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if status != 429:
        return None
    seconds = retry_after_seconds(error)
    return 1.0 if seconds is None else seconds
