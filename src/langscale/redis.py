"""Redis connections and the job serializer, configured once for both services."""

from __future__ import annotations

import json
from typing import Any

from arq.connections import RedisSettings
from redis.asyncio import Redis

from langscale.settings import Settings


def create_redis(settings: Settings, **overrides: Any) -> Redis:
    """One pooled client per process; every run reuses it."""
    options: dict[str, Any] = {"health_check_interval": 30, "socket_keepalive": True}
    options.update(overrides)
    return Redis.from_url(settings.redis_url, **options)


def arq_redis_settings(settings: Settings) -> RedisSettings:
    # arq's default 1 s connect timeout trips when the loop is busy at start (DESIGN.md).
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    redis_settings.conn_timeout = 5
    return redis_settings


def dump_job(obj: Any) -> bytes:
    """arq job/result serializer: JSON, so jobs are readable and never unpickled."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def load_job(data: bytes) -> Any:
    return json.loads(data)
