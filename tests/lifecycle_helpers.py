"""The run lifecycle in-process, on a test Redis: a gateway's store and workers' leases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from langscale.contract import JobSpec
from langscale.lifecycle import Claim, Leases, LifecycleConfig, Requeue, RunStore
from langscale.settings import Settings

T = TypeVar("T")


def lifecycle_config(redis_url: str, **settings: Any) -> LifecycleConfig:
    return LifecycleConfig.from_settings(Settings(redis_url=redis_url, **settings))


def store_and_leases(
    redis: Redis, redis_url: str, **settings: Any
) -> tuple[LifecycleConfig, RunStore, Leases]:
    """A gateway's and a worker's (``w``, serving ``chat``) sides of one lifecycle."""
    config = lifecycle_config(redis_url, **settings)
    return config, RunStore(redis, config), Leases(redis, config, "w", ["chat"])


async def submit(
    store: RunStore,
    pipeline: str = "chat",
    count: int = 1,
    partition: int = 0,
    **options: Any,
) -> list[str]:
    run_ids = store.new_run_ids(count, partition)
    specs = [JobSpec(run_id=r, pipeline=pipeline, input={"n": i}) for i, r in enumerate(run_ids)]
    submitted = await store.submit(specs, **options)
    assert submitted.outcome == "queued", submitted
    return run_ids


async def claim_all(leases: Leases, slots: int = 100, partition: int = 0) -> list[Claim]:
    return (await leases.claim(partition, slots, idle=False)).claims


async def next_attempt(leases: Leases, claim: Claim) -> Claim:
    """End ``claim``'s attempt (back to the queue) and start the run's next one."""
    await leases.finish(claim.partition, [(claim, Requeue("test"))])
    (again,) = [c for c in await claim_all(leases, partition=claim.partition)]
    assert again.run_id == claim.run_id
    return again


async def eventually(
    check: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
