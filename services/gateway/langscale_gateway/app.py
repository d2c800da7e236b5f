"""The gateway's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace

import langscale
from langscale import telemetry
from langscale.lifecycle import LifecycleConfig, RunStore, StreamHub
from langscale.redis import create_redis, start_redis_kind_check
from langscale.settings import Settings, get_settings
from langscale_gateway import errors, openapi
from langscale_gateway.auth import Authenticator
from langscale_gateway.body_limit import BodySizeLimit
from langscale_gateway.catalog import PipelineCatalog
from langscale_gateway.drain import Drain
from langscale_gateway.observability import HttpMetrics
from langscale_gateway.openapi import DocsBuilder
from langscale_gateway.routes import langserve, runs, system, threads
from langscale_gateway.runnable_url import QueryBeforeMethod
from langscale_gateway.service import RunService
from langscale_gateway.waiter import RunWaiter
from langscale_gateway.webhooks import Deliverer


def create_app(
    settings: Settings | None = None, tracer_provider: trace.TracerProvider | None = None
) -> FastAPI:
    """The gateway app. Spans go to ``tracer_provider``, else to the global provider
    (:func:`langscale.telemetry.setup_tracing`); with neither, tracing costs nothing."""
    settings = settings or get_settings()
    drain = Drain(settings.gateway_drain_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = create_redis(settings)
        checking = await start_redis_kind_check(redis, settings.redis_url)
        config = LifecycleConfig.from_settings(settings)
        store = RunStore(redis, config)
        hub = StreamHub(
            redis, config.keyspace, lambda: create_redis(settings, single_connection=True)
        )
        deliverer = Deliverer(settings, store)
        waiter = RunWaiter(
            redis, store, drain.expired, {config.keyspace.webhook_channel: deliverer.wake}
        )
        await waiter.start()
        deliverer.start()
        app.state.auth = Authenticator(settings, redis)
        app.state.service = RunService(
            settings=settings,
            runs=store,
            catalog=PipelineCatalog(store, ttl=settings.pipeline_cache_ttl),
            waiter=waiter,
            hub=hub,
            drain=drain,
            webhooks=deliverer.policy,
            tracer=telemetry.get_tracer(tracer_provider),
        )
        try:
            yield
        finally:
            checking.cancel()
            await deliverer.stop()
            await waiter.stop()
            await hub.close()
            await redis.aclose()

    app = FastAPI(
        title="langscale gateway",
        version=langscale.__version__,
        description="Queue LangChain runs for langscale workers; LangServe-compatible.",
        lifespan=lifespan,
        # Ours (openapi.py): the real error schema, per-pipeline routes, offline assets.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.drain = drain
    errors.install(app)
    docs = DocsBuilder(
        app,
        [system.router, runs.router, threads.router, langserve.router],
        auth=settings.auth_enabled,
        rate_limited=settings.rate_limit_per_minute > 0,
    )
    openapi.install(app, docs)
    # Fixed routes first: /v1/... must never be taken for /{pipeline}/...
    app.include_router(system.router)
    app.include_router(runs.router)
    app.include_router(threads.router)
    app.include_router(langserve.router)
    # Ours, not FastAPI's max_body_size: Starlette answers that 413 in plain text.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(QueryBeforeMethod)  # RemoteRunnable("…/chat?timeout=10")
    # Outermost: counts and times every answer, the 413s and error pages included.
    app.add_middleware(HttpMetrics)
    if telemetry.tracing_active(tracer_provider):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracer_provider or trace.get_tracer_provider(),
            excluded_urls="/healthz,/readyz,/metrics",
            # One server span per request; no spans per ASGI send/receive message.
            exclude_spans=["receive", "send"],
        )
    return app


def run(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    telemetry.setup_tracing("langscale-gateway")
    app = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            app.state.drain.begin()  # requests and streams in flight get the window
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        # uvicorn's own wait follows the drain window (plus the time to send the last bytes).
        timeout_graceful_shutdown=int(settings.gateway_drain_timeout) + 1,
    )
    Server(config).run()
