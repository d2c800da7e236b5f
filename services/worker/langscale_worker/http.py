"""The worker's own small HTTP server: a per-pod liveness probe and Prometheus metrics.

arq's health-check key is shared by every worker of a queue, so it passes while any of them
lives; ``/healthz`` here answers for this process only: its event loop must be turning
(this server runs on it) and its queue loop must have gone round recently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from langscale import metrics as langscale_metrics

logger = logging.getLogger(__name__)

# Dependencies a worker's runs need besides Redis (a pipeline's vector store...): name ->
# a check returning None when it answers, else why not. Pipelines add theirs when they are
# built (before the process starts); /readyz runs them.
Check = Callable[[], Awaitable[str | None]]
_READINESS: dict[str, Check] = {}
READINESS_TIMEOUT = 2.0


def add_readiness_check(name: str, check: Check) -> None:
    _READINESS[name] = check


async def _readiness() -> dict[str, str]:
    async def one(check: Check) -> str:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT):
                return await check() or "ok"
        except TimeoutError:
            return f"no answer within {READINESS_TIMEOUT:g} s"

    names = list(_READINESS)
    results = await asyncio.gather(*(one(_READINESS[name]) for name in names))
    return dict(zip(names, results, strict=True))


def create_app(last_iteration: Callable[[], float], stale_after: float) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        age = time.monotonic() - last_iteration()
        healthy = age < stale_after
        return JSONResponse(
            {"status": "ok" if healthy else "stalled", "queue_loop_age_seconds": round(age, 3)},
            status_code=200 if healthy else 503,
        )

    async def readyz(request: Request) -> JSONResponse:
        """Whether this worker's runs can succeed: every dependency a pipeline added."""
        checks = await _readiness()
        ready = all(result == "ok" for result in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(langscale_metrics.WORKER), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # signals belong to the worker process (drain on SIGTERM)


async def _serve(server: uvicorn.Server, host: str, port: int) -> None:
    try:
        await server.serve()
    except (SystemExit, OSError):  # uvicorn exits when it cannot bind; the worker goes on
        logger.error(
            "worker HTTP server could not listen on %s port %d: no /healthz, /metrics", host, port
        )


async def start(app: Starlette, port: int, host: str = "0.0.0.0") -> asyncio.Task[None]:
    """Serve ``app`` on ``host``:``port`` (LANGSCALE_WORKER_HTTP_HOST: "::" on IPv6-only
    clusters); returns once it listens (or could not)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = _Server(config)
    task = asyncio.create_task(_serve(server, host, port), name="worker-http")
    for _ in range(100):
        if server.started or task.done():
            break
        await asyncio.sleep(0.05)
    return task
