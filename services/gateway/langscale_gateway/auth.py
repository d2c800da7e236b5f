"""API keys and tenants.

Keys are stored hashed (SHA-256 hex), from ``LANGSCALE_API_KEYS`` or a file (a mounted
Kubernetes Secret), one ``sha256hex:tenant[:admin]`` each. The file is re-read when it
changes (checked every ``LANGSCALE_API_KEYS_RELOAD_INTERVAL`` seconds), so keys rotate
without a restart; a file that no longer parses keeps the previous keys and logs an error.
Clients send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. A tenant sees only
its own runs; admins see all and may list and re-queue failed runs. Per-key request rate
limits are shared by every gateway replica through Redis.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from redis.asyncio import Redis

from langscale.contract import DEFAULT_TENANT
from langscale.keys import Keyspace
from langscale.settings import Settings
from langscale_gateway.errors import ApiError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    tenant: str
    admin: bool
    key_id: str  # a prefix of the key's hash: safe to log and to key rate limits by

    def can_see(self, tenant: str) -> bool:
        return self.admin or tenant == self.tenant


ANONYMOUS = Principal(tenant=DEFAULT_TENANT, admin=True, key_id="anonymous")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key_entry(entry: str) -> tuple[str, Principal]:
    digest, _, rest = entry.strip().partition(":")
    tenant, _, role = rest.partition(":")
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest.lower()):
        raise ValueError("an API key entry starts with the key's SHA-256 in hex")
    if not tenant or role not in ("", "admin"):
        raise ValueError("an API key entry is sha256hex:tenant or sha256hex:tenant:admin")
    return digest.lower(), Principal(tenant=tenant, admin=role == "admin", key_id=digest[:12])


def parse_key_lines(lines: list[str]) -> dict[str, Principal]:
    entries = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return dict(parse_key_entry(entry) for entry in entries)


class KeysFile:
    """The keys of ``LANGSCALE_API_KEYS_FILE``, re-read when the file changes.

    A mounted Secret is updated by the kubelet swapping a symlink, so the file's inode, size
    and mtime change: ``stat`` (which follows the link) at most every ``interval`` seconds
    notices it.
    """

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._signature = self._stat()
        self.keys = parse_key_lines(path.read_text().splitlines())
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> dict[str, Principal]:
        now = time.monotonic()
        if self.interval <= 0 or now - self._checked < self.interval:
            return self.keys
        self._checked = now
        try:
            signature = self._stat()
            if signature != self._signature:
                self.keys = parse_key_lines(self.path.read_text().splitlines())
                self._signature = signature
                logger.info("reloaded %d API keys from %s", len(self.keys), self.path)
        except (OSError, ValueError) as error:
            logger.error(
                "API keys file %s not reloaded, keeping the previous keys: %s", self.path, error
            )
        return self.keys


# KEYS[1] the key's limiter. ARGV: limit per minute. GCRA on Redis time, so every gateway
# replica shares one budget: up to `limit` at once, then one every 60/limit s.
# Returns 0 if allowed, else the milliseconds until the next request would be.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = 60000 / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - 60000
if now < allow_at then return math.ceil(allow_at - now) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(tat + interval - now))
return 0
"""


class Authenticator:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.enabled = settings.auth_enabled
        self._static = parse_key_lines(list(settings.api_keys)) if self.enabled else {}
        self._file = (
            KeysFile(settings.api_keys_file, settings.api_keys_reload_interval)
            if self.enabled and settings.api_keys_file
            else None
        )
        self.rate_limit = settings.rate_limit_per_minute
        self.keyspace = Keyspace(settings.queue_name)
        self._gcra = redis.register_script(_GCRA)
        if not self.enabled:
            logger.warning(
                "AUTHENTICATION IS OFF: anyone who can reach this gateway can run pipelines "
                "and read every run. Set LANGSCALE_AUTH_ENABLED=true and API keys for anything "
                "but local use."
            )
        elif not self.keys:
            logger.warning("authentication is on but no API key is configured: all calls 401")

    @property
    def keys(self) -> dict[str, Principal]:
        if self._file is None:
            return self._static
        return {**self._static, **self._file.current()}

    def _principal(self, request: Request) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key")
        if not key:
            raise ApiError(
                401,
                "unauthenticated",
                "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = self.keys.get(hash_key(key))
        if principal is not None:
            return principal
        raise ApiError(
            401,
            "invalid_api_key",
            "the API key is not valid",
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def authenticate(self, request: Request) -> Principal:
        principal = self._principal(request)
        if self.rate_limit and principal is not ANONYMOUS:
            wait_ms = await self._gcra(
                keys=[self.keyspace.rate_limit(principal.key_id)], args=[self.rate_limit]
            )
            if wait_ms:
                seconds = max(1, math.ceil(int(wait_ms) / 1000))
                raise ApiError(
                    429,
                    "rate_limited",
                    f"more than {self.rate_limit} requests per minute for this API key",
                    headers={"Retry-After": str(seconds)},
                    retry_after=seconds,
                )
        return principal
