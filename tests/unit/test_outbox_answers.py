"""The worker's outbox and LLM answers kept for replay (issue 16: Redis commands per run):
an answer goes with its attempt's outcome or ANSWER_DELAY after it came, and not at all when
that outcome ends the run for good (its replay hash would be deleted at once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from lifecycle_helpers import claim_all, eventually, lifecycle_config, submit
from redis.asyncio import Redis

from langscale.lifecycle import (
    Applied,
    Claim,
    Leases,
    LifecycleConfig,
    Requeue,
    RunStore,
    Succeeded,
)
from langscale.localredis import LocalRedis
from langscale_worker.process import ANSWER_DELAY, Outbox


@dataclass
class Started:
    config: LifecycleConfig
    claim: Claim
    outbox: Outbox


@pytest.fixture
async def started(redis: Redis, redis_server: LocalRedis) -> AsyncIterator[Started]:
    config = lifecycle_config(redis_server.url)
    await submit(RunStore(redis, config))
    leases = Leases(redis, config, "w", ["chat"])
    (claim,) = await claim_all(leases)
    outbox = Outbox(leases)
    task = asyncio.create_task(outbox.run())
    yield Started(config, claim, outbox)
    task.cancel()


async def hset_calls(redis: Redis) -> int:
    return int((await redis.info("commandstats")).get("cmdstat_hset", {}).get("calls", 0))


async def test_an_answer_whose_run_ends_with_it_is_never_written(
    redis: Redis, started: Started
) -> None:
    claim = started.claim
    before = await hset_calls(redis)
    await started.outbox.remember(claim.run_id, claim.fence, "d:1", '"answer"')
    assert await started.outbox.finish(claim, Succeeded('"ok"')) is Applied.APPLIED
    assert await hset_calls(redis) - before == 1  # the run's end; no answer
    assert not started.outbox._pending.answers  # nothing left to write later either


async def test_an_answer_of_a_running_attempt_is_written_within_the_delay(
    redis: Redis, started: Started
) -> None:
    claim = started.claim
    replay = started.config.keyspace.replay(claim.run_id)
    await started.outbox.remember(claim.run_id, claim.fence, "d:1", '"answer"')
    assert await eventually(lambda: redis.hget(replay, "v:d:1"), timeout=ANSWER_DELAY + 5)


async def test_an_answer_goes_before_an_outcome_that_lets_the_run_go_on(
    redis: Redis, started: Started
) -> None:
    claim = started.claim
    replay = started.config.keyspace.replay(claim.run_id)
    await started.outbox.remember(claim.run_id, claim.fence, "d:1", '"answer"')
    assert await started.outbox.finish(claim, Requeue("test")) is Applied.APPLIED
    assert await redis.hget(replay, "v:d:1") == b'"answer"'  # kept for the next attempt
