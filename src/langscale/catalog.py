"""Pipeline definitions in Redis: workers publish them, gateways read them."""

from __future__ import annotations

import time
from collections.abc import Iterable

from redis.asyncio import Redis

from langscale import keys
from langscale.contract import PipelineDefinition


async def publish(redis: Redis, worker_id: str, definitions: Iterable[PipelineDefinition]) -> None:
    """Write each definition and the worker's heartbeat in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for definition in definitions:
            pipe.hset(keys.PIPELINES, definition.name, definition.model_dump_json())
        pipe.zadd(keys.WORKERS, {worker_id: time.time()})
        await pipe.execute()


async def load(redis: Redis) -> dict[str, PipelineDefinition]:
    rows: dict[bytes, bytes] = await redis.hgetall(keys.PIPELINES)  # type: ignore[misc]
    return {
        name.decode(): PipelineDefinition.model_validate_json(raw) for name, raw in rows.items()
    }


async def unregister_worker(redis: Redis, worker_id: str) -> None:
    await redis.zrem(keys.WORKERS, worker_id)


async def live_workers(redis: Redis, within_seconds: float) -> int:
    return int(await redis.zcount(keys.WORKERS, time.time() - within_seconds, "+inf"))
