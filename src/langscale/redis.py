"""Redis connections for both services: one bounded pool per process, riding out blips.

``LANGSCALE_REDIS_URL`` is a ``redis://`` or ``rediss://`` URL, or, for Redis high
availability, ``redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]``
(the master of ``<service>`` as the Sentinels name it; after a failover the client finds
the new master by itself), or, for a Redis Cluster (or Valkey Cluster, or a managed one),
``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://`` with
TLS): any reachable nodes; the client finds the rest and follows slots as they move
(:class:`ClusterClient`).

Every command is retried with backoff for a few seconds on connection errors, refused
connections included (redis-py raises those as a bare ``OSError`` from inside its connect,
outside its retry policy, unless the policy names ``OSError`` too). Longer outages are the
callers' business: the worker keeps retrying its writes (:mod:`langscale_worker.process`),
the gateway answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster, get_node_name
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterError,
    ConnectionError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)
from redis.sentinel import MasterNotFoundError

from langscale.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a Redis that is restarting, failing over or unreachable raises (a cluster that
# cannot serve a slot raises ClusterUnavailable, a ConnectionError).
UNAVAILABLE: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, OSError)
SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
URL_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME, *CLUSTER_SCHEMES)
URL_SETTING = "LANGSCALE_REDIS_URL"


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


def _cluster_options() -> dict[str, Any]:
    # A node that does not answer is most likely dead and about to be replaced: try it a
    # few times only, then let the cluster client re-read the layout and try again.
    return {
        "health_check_interval": 30,
        "socket_keepalive": True,
        "socket_connect_timeout": 2,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
    }


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


# --- Redis Cluster ------------------------------------------------------------------------


class ClusterUnavailable(ConnectionError):
    """The cluster cannot serve a slot now: a master is down and not yet replaced, a slot
    no node serves, the cluster is failing over. Like an unreachable Redis: retry later."""


class WrongRedisKind(RuntimeError):
    """``LANGSCALE_REDIS_URL`` names a cluster and the Redis is not one, or the reverse."""


# What redis-py raises when the cluster cannot serve a command now (ClusterError covers
# CLUSTERDOWN and MASTERDOWN; TryAgainError a slot moving; ClusterError itself too many
# redirections).
_CLUSTER_TRANSIENT: tuple[type[Exception], ...] = (
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
)


@dataclass(frozen=True)
class ClusterUrl:
    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    ssl: bool


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterUrl:
    """``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster``:
    TLS); any of the cluster's nodes, the rest are discovered."""
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    user, _, password = auth.partition(":")
    nodes = []
    for item in filter(None, (h.strip() for h in hosts.split(","))):
        host, _, port = item.rpartition(":")
        if not host or host.endswith(":"):  # no port (an IPv6 address needs [brackets])
            host, port = item, "6379"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("a redis+cluster URL needs at least one host:port")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a cluster has only database 0")
    return ClusterUrl(
        nodes=nodes,
        username=unquote(user) or None,
        password=unquote(password) or None,
        ssl=parts.scheme.startswith("rediss"),
    )


# Set while a task holds one of a ClusterClient's in-flight permits: the commands redis-py
# sends from inside one (a pipeline re-sending a redirected command) take no second one.
_HOLDING: contextvars.ContextVar[bool] = contextvars.ContextVar("holding", default=False)


@contextlib.asynccontextmanager
async def _permit(client: ClusterClient) -> AsyncIterator[None]:
    if _HOLDING.get():
        yield
        return
    async with client.in_flight:
        token = _HOLDING.set(True)
        try:
            yield
        except _CLUSTER_TRANSIENT as error:
            raise ClusterUnavailable(str(error)) from error
        except KeyError as error:
            # redis-py's asyncio NodesManager.get_node_from_slot raises a bare KeyError for
            # a slot its layout lacks (redis/redis-py#4296), and nothing re-reads the layout
            # after it: the slot would stay unreachable after the cluster covers it again.
            client._initialize = True
            raise ClusterUnavailable(f"slot {error} is not covered by the cluster") from error
        finally:
            _HOLDING.reset(token)


class _Pipeline(ClusterPipeline):
    """A cluster pipeline under the client's in-flight bound, its errors as the client's."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with _permit(cast(ClusterClient, self._client)):
            return await super().execute(raise_on_error, allow_redirections)


class _Nodes(dict[str, ClusterNode]):
    def values(self) -> Any:
        return list(super().values())


class ClusterClient(RedisCluster):
    """redis-py's asyncio cluster client, with what langscale needs that it lacks:

    - a bound on commands in flight (``LANGSCALE_REDIS_MAX_CONNECTIONS``): redis-py's
      per-node limit raises instead of waiting, so commands wait here instead and no node
      ever sees more connections than that from one process;
    - errors of a cluster that cannot serve a slot now raised as :class:`ClusterUnavailable`
      (a ConnectionError: callers retry, the gateway answers 503 with Retry-After);
    - the nodes of the URL kept as startup nodes (redis-py forgets a node after a
      connection error to it, and a cluster whose nodes all restarted would stay lost);
    - pub/sub (the asyncio cluster client has none; PUBLISH reaches every node of a
      cluster, so a plain subscription to any node hears everything);
    - a connection of one's own to the node serving a key, for blocking reads and
      commands that must share a connection (WAIT after a write).
    """

    refresh_seconds = 1.0  # at most one topology refresh per second, on connection errors

    def __init__(self, url: ClusterUrl, *, max_in_flight: int, **options: Any) -> None:
        super().__init__(
            startup_nodes=[ClusterNode(host, port) for host, port in url.nodes],
            username=url.username,
            password=url.password,
            ssl=url.ssl,
            # Slots a failed shard held answer ClusterUnavailable; the others keep working.
            require_full_coverage=False,
            cluster_error_retry_attempts=4,
            **options,
        )
        self.url = url
        self.in_flight = asyncio.Semaphore(max_in_flight)
        self._max_connections = max_in_flight
        self._node_options: dict[str, Any] = {
            "username": url.username,
            "password": url.password,
            **options,
        }
        if url.ssl:
            self._node_options["connection_class"] = SSLConnection
        self._pools: dict[tuple[str, int], BlockingConnectionPool] = {}
        self._refreshed = 0.0
        # redis-py iterates its startup nodes across awaits while failing commands remove
        # some: iterate a copy.
        self.nodes_manager.startup_nodes = _Nodes(self.nodes_manager.startup_nodes)

    # --- commands -------------------------------------------------------------------------
    async def initialize(self) -> ClusterClient:
        if self._initialize:
            startup = self.nodes_manager.startup_nodes
            for host, port in self.url.nodes:
                if get_node_name(host, port) not in startup:
                    node = ClusterNode(host, port, **self.connection_kwargs)
                    startup[node.name] = node
        try:
            await super().initialize()
        except RedisClusterException as error:
            raise ClusterUnavailable(str(error)) from error
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with _permit(self):
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if transaction or shard_hint:
            raise ValueError("a cluster pipeline has no transaction")
        return _Pipeline(self)  # type: ignore[abstract]  # (as redis-py's own)

    # --- plain connections to nodes -------------------------------------------------------
    def node_client(self, host: str, port: int) -> Redis:
        """A client of one node (a bounded pool per node, kept for the client's life)."""
        pool = self._pools.get((host, port))
        if pool is None:
            pool = BlockingConnectionPool(
                host=host,
                port=port,
                max_connections=self._max_connections,
                timeout=30,
                **self._node_options,
            )
            self._pools[(host, port)] = pool
        return Redis(connection_pool=pool)

    def pubsub(self, **kwargs: Any) -> PubSub:
        """A subscription on one node, any: a cluster delivers every message to all."""
        nodes = [(n.host, n.port) for n in self.get_nodes()] or list(self.url.nodes)
        host, port = random.choice(nodes)
        return self.node_client(host, int(port)).pubsub(**kwargs)

    async def node_for(self, key: str) -> tuple[str, int]:
        """The address of the master serving ``key``'s slot, as this client knows it."""
        if self._initialize:
            await self.initialize()
        try:
            node = self.get_node_from_key(key)
        except SlotNotCoveredError as error:
            raise ClusterUnavailable(str(error)) from error
        assert node is not None
        return node.host, int(node.port)

    async def dedicated(self, key: str) -> tuple[Redis, Redis]:
        """A connection of its own to the master serving ``key`` (for a blocking read), and
        a client of the same node (to CLIENT UNBLOCK it). A MOVED answer is followed, a
        dead node makes the client re-read the cluster's layout."""
        host, port = await self.node_for(key)
        for attempt in range(4):
            client = Redis(
                host=host, port=port, single_connection_client=True, **self._node_options
            )
            try:
                await client.exists(key)  # a master that no longer serves it says where to go
                return client, self.node_client(host, port)
            except ResponseError as error:
                await client.aclose()
                moved = _moved_to(error)
                if moved is None:
                    if cluster_in_flux(error):
                        raise ClusterUnavailable(str(error)) from error
                    raise
                host, port = moved
            except UNAVAILABLE:
                await client.aclose()
                if attempt == 3:
                    raise
                await self.refresh()
                host, port = await self.node_for(key)
        raise ClusterUnavailable(f"no master answers for the slot of {key!r}")

    async def refresh(self) -> None:
        """Re-read the cluster's layout (at most once per ``refresh_seconds``), the way
        redis-py does after a MOVED: under its lock, before the next command."""
        if time.monotonic() - self._refreshed < self.refresh_seconds:
            return
        self._refreshed = time.monotonic()
        self._initialize = True
        await self.initialize()

    async def aclose(self) -> None:
        # redis-py calls this itself, from inside a command, to re-read the layout after a
        # connection error: the nodes' own connections (subscriptions, blocking reads) stay.
        if not _HOLDING.get():
            for pool in self._pools.values():
                await pool.disconnect()
            self._pools.clear()
        await super().aclose()


def cluster_in_flux(error: ResponseError) -> bool:
    """Whether a node's error says its slot moved or the cluster cannot serve it now (as a
    plain connection sees it: redis-py's pipelines put the reply inside their message)."""
    text = str(error)
    return any(word in text for word in ("MOVED ", "ASK ", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN"))


def _moved_to(error: ResponseError) -> tuple[str, int] | None:
    """``MOVED <slot> <host>:<port>`` -> (host, port)."""
    words = str(error).split()
    if len(words) == 3 and words[0] == "MOVED":
        host, _, port = words[2].rpartition(":")
        return host, int(port)
    return None


async def check_redis_kind(redis: Redis, url: str) -> None:
    """Stop a process whose ``LANGSCALE_REDIS_URL`` names the wrong kind of Redis: a
    cluster URL at a Redis without cluster mode, or a plain (or Sentinel) URL at a cluster
    node (it would answer MOVED for most keys). Raises :class:`WrongRedisKind`; Redis
    errors (unreachable) pass through, for the caller to retry."""
    if isinstance(redis, ClusterClient):
        for host, port in redis.url.nodes:
            node = redis.node_client(host, port)
            try:
                info = await node.info("cluster")
            except UNAVAILABLE:
                continue
            if not int(info.get("cluster_enabled", 0)):
                raise WrongRedisKind(
                    f"{URL_SETTING} is a cluster URL ({redis.url.nodes[0][0]}:...), but "
                    f"{host}:{port} is a Redis without cluster mode: use redis:// (or "
                    "redis+sentinel://) for it"
                )
            return
        raise ClusterUnavailable(f"no node of {URL_SETTING} answers")
    info = await redis.info("cluster")
    if int(info.get("cluster_enabled", 0)):
        raise WrongRedisKind(
            f"{URL_SETTING} points at a Redis Cluster node: use "
            "redis+cluster://host:port[,host:port...] (rediss+cluster:// with TLS)"
        )


async def start_redis_kind_check(redis: Redis, url: str, wait: float = 5.0) -> asyncio.Task[None]:
    """:func:`check_redis_kind` at a process's start: raises :class:`WrongRedisKind` when
    Redis answers within ``wait`` seconds; if it does not, the check goes on in the
    returned task, which stops the process (SIGTERM to itself) on a wrong kind."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(*UNAVAILABLE):
        await with_retries(
            lambda: check_redis_kind(redis, url), deadline=loop.time() + wait, what="check Redis"
        )
        return asyncio.create_task(asyncio.sleep(0))

    async def later() -> None:
        try:
            await with_retries(lambda: check_redis_kind(redis, url), deadline=None, what="check")
        except WrongRedisKind as error:
            logger.critical("%s: stopping", error)
            os.kill(os.getpid(), signal.SIGTERM)

    return asyncio.create_task(later(), name="redis-kind-check")


def create_redis(settings: Settings, *, single_connection: bool = False) -> Redis:
    """The process's client: a pool of at most ``LANGSCALE_REDIS_MAX_CONNECTIONS``
    connections (requests wait for a free one), or one connection of its own."""
    url = settings.redis_url
    if is_cluster_url(url):
        if single_connection:
            raise ValueError("a cluster client has no single connection: use dedicated()")
        cluster = ClusterClient(  # type: ignore[abstract]  # (as redis-py's own)
            parse_cluster_url(url),
            max_in_flight=settings.redis_max_connections,
            **_cluster_options(),
        )
        # It answers every command langscale sends (the test suite runs on a cluster too);
        # what differs (pub/sub, blocking reads, WAIT) goes through its own methods.
        return cast(Redis, cluster)
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
