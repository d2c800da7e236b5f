"""Redis connections and the job serializer, configured once for both services."""

from __future__ import annotations

import json
from typing import Any

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from langscale.settings import Settings

# Ride out a Redis restart or failover (about 20 s) instead of failing the command.
RETRY_ERRORS: list[type[Exception]] = [ConnectionError, TimeoutError]


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=25)


def create_redis(settings: Settings, **overrides: Any) -> Redis:
    """One pooled client per process; every run reuses it."""
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_keepalive": True,
        "retry": _retry(),
        "retry_on_error": RETRY_ERRORS,
    }
    options.update(overrides)
    return Redis.from_url(settings.redis_url, **options)


def arq_redis_settings(settings: Settings) -> RedisSettings:
    # arq's default 1 s connect timeout trips when the loop is busy at start (DESIGN.md).
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    redis_settings.conn_timeout = 5
    redis_settings.retry = _retry()
    redis_settings.retry_on_error = RETRY_ERRORS
    return redis_settings


def dump_job(obj: Any) -> bytes:
    """arq job/result serializer: JSON, so jobs are readable and never unpickled."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def load_job(data: bytes) -> Any:
    return json.loads(data)
