"""The lifecycle's Lua scripts: loaded from ``scripts/*.lua``, rendered, registered once.

Partition scripts get ``_prelude.lua`` (the shared header ARGV[1..5], the key kinds from
:mod:`langscale.keys`, the clock and the helpers that append events and end runs) in front
of their own text; ``registry_*`` scripts touch deployment-wide keys and stand alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from langscale import keys
from langscale.redis import ClusterClient, ClusterUnavailable, cluster_in_flux

_PARTITION_SCRIPTS = (
    "enqueue_many",
    "claim",
    "renew",
    "finish",
    "append",
    "cancel",
    "follow",
    "requeue_failed",
    "queue_stats",
    "replay",
    "remember",
    "trace_link",
    "thread_submit",
    "idempotency_guard",
    "thread_read",
    "thread_list",
    "thread_delete",
    "history_append",
    "history_partial",
    "list_runs",
    "forget",
    "webhook_claim",
    "webhook_done",
    "fail_unserved",
)
_REGISTRY_SCRIPTS = ("registry_heartbeat", "registry_read")

# Longest wait for replicas to acknowledge a write (LANGSCALE_REDIS_WAIT_REPLICAS).
WAIT_TIMEOUT_MS = 1000


def _text(name: str) -> str:
    return (resources.files(__package__) / "scripts" / f"{name}.lua").read_text()


@cache
def source(name: str) -> str:
    """The full text Redis runs for a script."""
    if name in _REGISTRY_SCRIPTS:
        return _text(name)
    kinds = "\n".join(f"local {lua} = '{kind}'" for lua, kind in keys.LUA_KEY_KINDS.items())
    return _text("_prelude").replace("--KINDS--", kinds) + "\n" + _text(name)


@dataclass(frozen=True)
class Header:
    """ARGV[1..5] of every partition script (see ``_prelude.lua``)."""

    keyspace: keys.Keyspace
    result_ttl: int
    stream_ttl: int
    stream_max_len: int

    def for_partition(self, partition: int) -> list[Any]:
        return [
            self.keyspace.prefix(partition),
            self.result_ttl,
            self.stream_ttl,
            self.stream_max_len,
            self.keyspace.global_prefix,
        ]


class Scripts:
    """Every lifecycle script registered on one Redis client (EVALSHA, loaded on demand)."""

    def __init__(self, redis: Redis) -> None:
        self._scripts = {
            name: redis.register_script(source(name))
            for name in (*_PARTITION_SCRIPTS, *_REGISTRY_SCRIPTS)
        }

    async def __call__(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def replicated(
        self, redis: Redis, name: str, keys: list[str], args: list[Any], replicas: int
    ) -> tuple[Any, int]:
        """Run a script, then WAIT on the same connection until ``replicas`` replicas have
        its writes (at most WAIT_TIMEOUT_MS). Returns (its reply, replicas reached)."""
        if isinstance(redis, ClusterClient):  # on the node serving the keys, directly
            for _ in range(2):
                node = redis.node_client(*await redis.node_for(keys[0]))
                try:
                    return await self._replicated(node, name, keys, args, replicas)
                except ResponseError as error:
                    if not cluster_in_flux(error):
                        raise
                    await redis.refresh()
            raise ClusterUnavailable(f"the slot of {keys[0]!r} is moving or down; retry")
        return await self._replicated(redis, name, keys, args, replicas)

    async def _replicated(
        self, redis: Redis, name: str, keys: list[str], args: list[Any], replicas: int
    ) -> tuple[Any, int]:
        async with redis.pipeline(transaction=False) as pipe:
            await self._scripts[name](keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, WAIT_TIMEOUT_MS)
            reply, reached = await pipe.execute()
        return reply, int(reached)
