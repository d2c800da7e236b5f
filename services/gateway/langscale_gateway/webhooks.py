"""Webhooks: one signed POST when a run ends, delivered at least once.

The run lifecycle queues a run's delivery in the same script that ends it (``end_run`` in
``_prelude.lua``), so no end is missed, whichever process ends the run. Every gateway
process delivers: it takes due deliveries from Redis for one attempt each (a lease: a
gateway that dies mid-delivery loses nothing, another takes the delivery when the lease
ends), POSTs them, and records the outcome. A failed attempt is retried with exponential
backoff (1 s doubling to 10 min, with jitter) until ``LANGSCALE_WEBHOOK_RETRY_FOR`` after
the run's end. The payload is read from the run when it is delivered.

Requests follow Standard Webhooks (https://www.standardwebhooks.com): headers
``webhook-id`` (``<run id>.<end ms>``, the same on every retry), ``webhook-timestamp`` and
``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` with the
tenant's ``whsec_`` secret); the body is ``{"type": "run.<state>", "timestamp", "data":
<the run>}``.

Destinations are checked against SSRF at submit and again at each delivery: private,
loopback, link-local and other non-global addresses are refused unless
``LANGSCALE_WEBHOOK_ALLOWED_HOSTS`` names the host or a network holding the address, and a
delivery connects to the address it checked (no second DNS answer), without redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks.webhooks import Webhook

from langscale import metrics
from langscale.contract import RunRecord
from langscale.lifecycle import RunStore
from langscale.lifecycle.store import WebhookDelivery
from langscale.redis import UNAVAILABLE
from langscale.settings import Settings
from langscale_gateway.errors import ApiError

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 600.0
# Fallback poll, seconds: a delivery's wake-up (pub/sub) may be lost while reconnecting.
POLL_SECONDS = 1.0


Outcome = Literal["delivered", "failed", "retry"]


class DestinationRefused(ValueError):
    """A webhook URL that may not be called (SSRF), or cannot be."""


@dataclass(frozen=True)
class Policy:
    """Who may get webhooks, where, signed with what."""

    secrets: dict[str, str]
    defaults: dict[str, str]
    allowed_hosts: frozenset[str]
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        hosts, networks = set(), []
        for entry in settings.webhook_allowed_hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(
            dict(settings.webhook_secrets),
            dict(settings.webhook_default_urls),
            frozenset(hosts),
            tuple(networks),
        )

    def secret(self, tenant: str) -> str | None:
        return self.secrets.get(tenant) or self.secrets.get("*")

    def default_url(self, tenant: str) -> str | None:
        return self.defaults.get(tenant) or self.defaults.get("*")

    def allows(self, host: str, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if host.lower().rstrip(".") in self.allowed_hosts:
            return True
        if any(ip in network for network in self.allowed_networks):
            return True
        return ip.is_global and not ip.is_multicast

    async def resolve(self, url: str) -> tuple[str, str, int]:
        """The host, the one address a delivery connects to, and the port; raises
        DestinationRefused for a URL that is not http(s), does not resolve, or resolves to
        an address that is not allowed."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DestinationRefused("a webhook is an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise DestinationRefused("a webhook URL carries no credentials")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise DestinationRefused("the webhook URL's port is not a number") from None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            raise DestinationRefused(
                f"the webhook host {host!r} does not resolve: {error}"
            ) from None
        addresses = sorted({str(info[4][0]) for info in infos})
        refused = [a for a in addresses if not self.allows(host, a)]
        if refused or not addresses:
            raise DestinationRefused(
                f"the webhook host {host!r} resolves to {', '.join(refused) or 'nothing'}: "
                "private, loopback and link-local destinations are refused unless "
                "LANGSCALE_WEBHOOK_ALLOWED_HOSTS names them"
            )
        return host, addresses[0], port


async def check_submitted(policy: Policy, tenant: str, url: str | None) -> str | None:
    """The webhook of a new run (its own, or the tenant's default), checked; 422 if it may
    not be called or the tenant has no signing secret."""
    url = url or policy.default_url(tenant)
    if not url:
        return None
    if len(url) > 2000:
        raise ApiError(422, "invalid_webhook", "a webhook URL has at most 2000 characters")
    if policy.secret(tenant) is None:
        raise ApiError(
            422,
            "webhook_not_configured",
            "webhooks are signed with the tenant's secret, and this tenant has none "
            "(LANGSCALE_WEBHOOK_SECRETS)",
        )
    try:
        await policy.resolve(url)
    except DestinationRefused as refused:
        raise ApiError(422, "webhook_not_allowed", str(refused)) from None
    return url


def payload(record: RunRecord) -> str:
    finished = record.finished_at or 0.0
    return json.dumps(
        {
            "type": f"run.{record.state.value}",
            "timestamp": datetime.fromtimestamp(finished, UTC).isoformat(),
            "data": record.model_dump(mode="json"),
        },
        separators=(",", ":"),
    )


def message_id(record: RunRecord) -> str:
    """``webhook-id``: the same on every retry of one end, another for a later end of the
    same run (re-queued by an operator): ``<run id>.<end time, ms>``."""
    return f"{record.run_id}.{round((record.finished_at or 0) * 1000)}"


def backoff(attempt: int) -> float:
    """Delay before the attempt after ``attempt`` (1, 2...): doubling, with jitter."""
    delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
    return delay * random.uniform(0.5, 1.0)


class Deliverer:
    """One gateway process's webhook deliveries (a background task)."""

    def __init__(
        self, settings: Settings, store: RunStore, client: httpx.AsyncClient | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.policy = Policy.from_settings(settings)
        self.client = client or httpx.AsyncClient(
            timeout=settings.webhook_timeout, follow_redirects=False, trust_env=False
        )
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # Longest a delivery is held by this process before another may take it.
        self._lease_ms = int((settings.webhook_timeout + 5) * 1000)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self.client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                taken = await self.take()
            except UNAVAILABLE as error:
                logger.warning("webhook deliveries not read: %s", error)
                taken = 0
            if taken and self._slots._value > 0:  # more may be due: look again at once
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def take(self) -> int:
        """Take due deliveries (as many as free slots) and start delivering them."""
        taken = 0
        for partition in self.store.config.partition_ids:
            free = self._slots._value
            if free <= 0:
                break
            now, deliveries = await self.store.claim_webhooks(partition, self._lease_ms, free)
            for delivery in deliveries:
                if delivery.attempt == 0 or delivery.record is None:
                    metrics.WEBHOOK_DELIVERIES.labels("expired").inc()
                    continue
                await self._slots.acquire()
                task = asyncio.create_task(self._deliver(delivery, now))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                taken += 1
        return taken

    async def _deliver(self, delivery: WebhookDelivery, now_ms: int) -> None:
        try:
            outcome, delay = await self.attempt(delivery, now_ms)
            await self.store.webhook_done(
                delivery.run_id, delivery.attempt, outcome, int(delay * 1000)
            )
        except UNAVAILABLE as error:  # the lease runs out; another attempt follows
            logger.warning("webhook outcome not recorded: %s", error)
        finally:
            self._slots.release()

    async def attempt(self, delivery: WebhookDelivery, now_ms: int) -> tuple[Outcome, float]:
        """One POST; returns ("delivered" | "retry" | "failed", retry delay)."""
        record = delivery.record
        assert record is not None
        if not record.state.is_final:  # an operator re-queued it: its next end notifies
            metrics.WEBHOOK_DELIVERIES.labels("expired").inc()
            return "failed", 0.0
        ended = (record.finished_at or now_ms / 1000) * 1000
        secret = self.policy.secret(record.tenant)
        error = ""
        if secret is None:
            error = "the tenant's signing secret was removed"
        else:
            body = payload(record)
            try:
                host, address, port = await self.policy.resolve(delivery.url)
                response = await self._post(
                    delivery.url, host, address, port, secret, body, message_id(record), now_ms
                )
                if 200 <= response.status_code < 300:
                    metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                    metrics.WEBHOOK_LATENCY.observe(max(0.0, (now_ms - ended) / 1000))
                    return "delivered", 0.0
                error = f"HTTP {response.status_code}"
            except DestinationRefused as refused:
                error = str(refused)
            except httpx.HTTPError as failure:
                error = f"{type(failure).__name__}: {failure}"
        delay = backoff(delivery.attempt)
        if (now_ms + delay * 1000 - ended) / 1000 > self.settings.webhook_retry_for or not secret:
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            logger.warning(
                "webhook given up",
                extra={"run_id": delivery.run_id, "attempts": delivery.attempt, "error": error},
            )
            return "failed", 0.0
        metrics.WEBHOOK_DELIVERIES.labels("retried").inc()
        logger.info(
            "webhook will be retried",
            extra={"run_id": delivery.run_id, "attempt": delivery.attempt, "error": error},
        )
        return "retry", delay

    async def _post(
        self,
        url: str,
        host: str,
        address: str,
        port: int,
        secret: str,
        body: str,
        message: str,
        now_ms: int,
    ) -> httpx.Response:
        sent_at = datetime.fromtimestamp(now_ms / 1000, UTC)
        signature = Webhook(secret).sign(message, sent_at, body)
        parts = urlsplit(url)
        # Connect to the address that was checked; Host and TLS name stay the URL's.
        literal = f"[{address}]" if ":" in address else address
        pinned = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
        default_port = 443 if parts.scheme == "https" else 80
        headers = {
            "content-type": "application/json",
            "host": host if port == default_port else f"{host}:{port}",
            "user-agent": "langscale-webhooks",
            "webhook-id": message,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        return await self.client.post(
            pinned, content=body, headers=headers, extensions={"sni_hostname": host}
        )
