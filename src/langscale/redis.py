"""Redis connections for both services: one bounded pool per process, riding out blips.

``LANGSCALE_REDIS_URL`` is a ``redis://`` or ``rediss://`` URL, or, for Redis high
availability, ``redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]``
(the master of ``<service>`` as the Sentinels name it; after a failover the client finds
the new master by itself).

Every command is retried with backoff for a few seconds on connection errors, refused
connections included (redis-py raises those as a bare ``OSError`` from inside its connect,
outside its retry policy, unless the policy names ``OSError`` too). Longer outages are the
callers' business: the worker keeps retrying its writes (:mod:`langscale_worker.process`),
the gateway answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.sentinel import MasterNotFoundError

from langscale.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a Redis that is restarting, failing over or unreachable raises.
UNAVAILABLE: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, OSError)
SENTINEL_SCHEME = "redis+sentinel"


def _retry() -> Retry:
    # About 3 s of attempts (0.05 s doubling to 0.5 s): a blip, not an outage.
    return Retry(
        ExponentialBackoff(cap=0.5, base=0.05),
        retries=8,
        supported_errors=UNAVAILABLE,  # type: ignore[arg-type]
    )


def _options(max_connections: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "retry": _retry(),
        "retry_on_error": list(UNAVAILABLE),
    }
    if max_connections is not None:
        options["max_connections"] = max_connections
    return options


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    service: str
    db: int
    password: str | None
    sentinel_password: str | None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]``; the
    Sentinels' own password, if any, as ``?sentinel_password=``."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    password = unquote(auth.partition(":")[2]) if auth else None
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = port, "26379"
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"{SENTINEL_SCHEME} URL needs the service name: .../<service>[/<db>]")
    query = parse_qs(parts.query)
    return SentinelUrl(
        sentinels=sentinels,
        service=path[0],
        db=int(path[1]) if len(path) > 1 else 0,
        password=password or None,
        sentinel_password=query["sentinel_password"][0] if "sentinel_password" in query else None,
    )


class WatchedSentinelPool(SentinelConnectionPool):
    """Asks the Sentinels where the master is at least every second, not only after an
    error: after a failover the old master may go on taking writes until the Sentinels turn
    it into a replica (about 10 s later), and writes it took then are lost. A new address
    closes the idle connections at once and the busy ones when they come back."""

    check_seconds = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_check = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_seconds
            with contextlib.suppress(*UNAVAILABLE, MasterNotFoundError):
                await self.get_master_address()
        return await super().get_connection(*args, **kwargs)


def create_redis(settings: Settings, *, single_connection: bool = False) -> Redis:
    """The process's client: a pool of at most ``LANGSCALE_REDIS_MAX_CONNECTIONS``
    connections (requests wait for a free one), or one connection of its own."""
    url = settings.redis_url
    if url.startswith(SENTINEL_SCHEME + "://"):
        sentinel_url = parse_sentinel_url(url)
        sentinel = Sentinel(
            sentinel_url.sentinels,
            sentinel_kwargs={"password": sentinel_url.sentinel_password, "socket_timeout": 2},
            password=sentinel_url.password,
            db=sentinel_url.db,
            **_options(None),
        )
        master = sentinel.master_for(
            sentinel_url.service, connection_pool_class=WatchedSentinelPool
        )
        if single_connection:
            return Redis(connection_pool=master.connection_pool, single_connection_client=True)
        return master
    if single_connection:
        return Redis.from_url(url, single_connection_client=True, **_options(None))
    pool = BlockingConnectionPool.from_url(
        url, timeout=30, **_options(settings.redis_max_connections)
    )
    return Redis(connection_pool=pool)


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    *,
    deadline: float | None,
    what: str,
    stop: asyncio.Event | None = None,
) -> T:
    """Run ``operation`` until it succeeds, backing off while Redis is unavailable, until
    ``deadline`` (loop time; None: no deadline) or ``stop`` is set; then raise."""
    loop = asyncio.get_running_loop()
    delay = 0.1
    while True:
        try:
            return await operation()
        except UNAVAILABLE as error:
            late = deadline is not None and loop.time() + delay > deadline
            if late or (stop is not None and stop.is_set()):
                raise
            logger.warning("%s: Redis unavailable (%s); retrying in %.1f s", what, error, delay)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
