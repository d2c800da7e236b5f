"""The shared LLM budget (Lua GCRA) and the fair gate, against a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from langscale.limits import RateLimit, find_limit, parse_rate_limits
from langscale.localredis import LocalRedis
from langscale_worker.ratelimit import (
    FairGate,
    SharedBudget,
    backoff_from_headers,
    parse_reset,
)


@pytest.fixture
async def clients(redis_server: LocalRedis) -> AsyncIterator[list[Redis]]:
    """Separate connection pools, as separate worker processes would have."""
    pools = [Redis.from_url(redis_server.url) for _ in range(4)]
    yield pools
    for pool in pools:
        await pool.aclose()


def budget(redis: Redis, rpm: int = 0, tpm: int = 0, **kwargs: float) -> SharedBudget:
    options = {"window": 1.0, "burst": 0.0, "lookahead": 10.0, **kwargs}
    return SharedBudget(redis, "test/model", RateLimit(rpm=rpm, tpm=tpm), **options)


async def test_concurrent_callers_get_distinct_slots_at_the_rate(
    redis: Redis, clients: list[Redis]
) -> None:
    budgets = [budget(client, rpm=20) for client in clients]  # one slot per 50 ms

    async def send_time(shared: SharedBudget) -> float:
        reservation = await shared.reserve()
        assert reservation.granted
        return time.monotonic() + reservation.seconds

    sends = sorted(await asyncio.gather(*(send_time(budgets[i % 4]) for i in range(40))))
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    # Atomic: no two callers got the same slot (a gap near 0); slots are one interval
    # apart, up to the few ms between the replies reaching us.
    assert min(gaps) > 0.04
    assert sends[-1] - sends[0] == pytest.approx(39 * 0.05, abs=0.02)


async def test_no_window_sees_more_than_limit_plus_burst(redis: Redis) -> None:
    shared = budget(redis, rpm=100, burst=0.05)  # burst of 5

    async def send_time() -> float:
        reservation = await shared.reserve()
        return time.monotonic() + reservation.seconds

    sends = sorted(await asyncio.gather(*(send_time() for _ in range(300))))
    assert sum(1 for s in sends if s - sends[0] < 0.005) == 5  # the burst goes at once
    # A 1 s window (less the few ms between replies reaching us) holds the limit + burst.
    most = max(sum(1 for s in sends if start <= s < start + 0.99) for start in sends)
    assert 100 <= most <= 105


async def test_reservations_beyond_the_lookahead_are_refused(redis: Redis) -> None:
    shared = budget(redis, rpm=10, lookahead=0.2)  # 100 ms interval
    results = [await shared.reserve() for _ in range(4)]
    assert [r.granted for r in results] == [True, True, True, False]
    assert results[3].seconds == pytest.approx(0.1, abs=0.02)  # ask again then
    assert not results[3].blocked


async def test_token_cost_is_charged_and_corrected(redis: Redis) -> None:
    shared = budget(redis, tpm=1000)  # 1 ms per token, no burst
    first = await shared.reserve(tokens=500)
    assert first.granted and first.seconds < 0.01  # a full bucket lets it go, in debt
    second = await shared.reserve(tokens=100)
    assert second.seconds == pytest.approx(0.5, abs=0.02)
    await redis.flushdb()
    await shared.reserve(tokens=500)
    await shared.correct(100 - 500)  # the provider reported 100 tokens: refund 400
    third = await shared.reserve(tokens=100)
    assert third.seconds == pytest.approx(0.1, abs=0.02)


async def test_refund_cannot_fill_beyond_a_full_bucket(redis: Redis) -> None:
    shared = budget(redis, tpm=1000)
    await shared.correct(-10_000)
    await shared.reserve(tokens=200)
    after = await shared.reserve(tokens=50)
    assert after.seconds == pytest.approx(0.2, abs=0.02)


async def test_a_block_holds_everyone_and_never_shortens(
    redis: Redis, clients: list[Redis]
) -> None:
    shared = [budget(client, rpm=1000) for client in clients]
    await shared[0].block(0.5)
    assert await shared[1].block(0.1) == pytest.approx(0.5, abs=0.05)
    denied = await asyncio.gather(*(b.reserve() for b in shared))
    assert all(not r.granted and r.blocked for r in denied)
    assert all(r.seconds == pytest.approx(0.5, abs=0.05) for r in denied)


async def test_gate_shares_a_busy_budget_by_tenant_weight(redis: Redis) -> None:
    shared = budget(redis, rpm=200, lookahead=0.02)  # 5 ms per slot
    gate = FairGate(shared, weights={"a": 3, "b": 1})
    order: list[str] = []

    async def call(tenant: str) -> None:
        await gate.acquire(tenant)
        order.append(tenant)

    await asyncio.gather(*(call(t) for t in ["a"] * 40 + ["b"] * 40))
    first = order[:40]
    assert first.count("a") == pytest.approx(30, abs=2)
    await gate.close()


async def test_a_burst_does_not_starve_another_tenant(redis: Redis) -> None:
    shared = budget(redis, rpm=100, lookahead=0.02)  # 10 ms per slot
    gate = FairGate(shared)
    order: list[str] = []
    five_done = asyncio.Event()

    async def call(tenant: str) -> None:
        await gate.acquire(tenant)
        order.append(tenant)
        if len(order) == 5:
            five_done.set()

    burst = [asyncio.create_task(call("big")) for _ in range(50)]
    await five_done.wait()
    await call("small")  # arrives behind 45 queued calls of the other tenant
    assert order.index("small") <= 7
    await asyncio.gather(*burst)
    await gate.close()


async def test_gate_waits_without_polling_redis(redis: Redis) -> None:
    shared = budget(redis, rpm=10, lookahead=0.05)  # 100 ms per slot
    gate = FairGate(shared)
    await shared.reserve()  # loads the script
    await redis.config_resetstat()
    started = time.monotonic()
    await asyncio.gather(*(gate.acquire() for _ in range(10)))
    elapsed = time.monotonic() - started
    calls = (await redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert elapsed == pytest.approx(1.0, abs=0.1)
    # 10 grants: a reservation each, plus one refusal per slot while the next is beyond
    # the lookahead; 10 waiting callers do not multiply that.
    assert calls <= 21
    assert gate.stats.granted == 10 and gate.stats.waiting == 0
    await gate.close()


def test_rate_limit_settings_parse() -> None:
    limits = {
        name: RateLimit.model_validate(value)
        for name, value in parse_rate_limits("openai/gpt-4o=500:20000, fake/*=60, *=:100").items()  # type: ignore[union-attr]
    }
    assert limits["openai/gpt-4o"] == RateLimit(rpm=500, tpm=20000)
    assert find_limit(limits, "fake/x") == RateLimit(rpm=60)
    assert find_limit(limits, "other/y") == RateLimit(tpm=100)
    with pytest.raises(ValueError):
        parse_rate_limits("openai/gpt-4o=lots")


def test_provider_headers_signal_a_spent_budget() -> None:
    assert parse_reset("6m0s") == 360 and parse_reset("250ms") == 0.25
    assert parse_reset("1.5s") == 1.5 and parse_reset("2") == 2
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    assert backoff_from_headers(spent) == 2
    tokens = {
        "x-ratelimit-remaining-tokens": "50",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-reset-tokens": "300ms",
    }
    assert backoff_from_headers(tokens) == pytest.approx(0.3)
    assert backoff_from_headers({"x-ratelimit-remaining-requests": "90"}) is None
    assert backoff_from_headers(None) is None
