"""Health, readiness and the pipeline list."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from langscale import metrics
from langscale_gateway.deps import Caller, Service
from langscale_gateway.errors import error_response
from langscale_gateway.openapi import errors

router = APIRouter()


@router.get("/healthz", tags=["system"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["system"],
    summary="Redis is reachable and pipelines are known",
    responses=errors(503),
)
async def readyz(service: Service) -> JSONResponse:
    try:
        pipelines = await service.catalog.all()
        workers = service.catalog.latest.live_workers
    except (RedisError, OSError) as error:
        return error_response(503, "redis_unavailable", f"Redis is not reachable: {error}")
    if not pipelines:
        return error_response(
            503, "no_pipelines", "no worker has published pipeline definitions yet"
        )
    # Workers may be scaled to zero: runs then wait in the queue, so that is still ready.
    return JSONResponse({"status": "ready", "pipelines": sorted(pipelines), "workers": workers})


@router.get(
    "/v1/queue",
    tags=["system"],
    summary="Queue figures: ready, deferred, in progress, backlog, oldest ready age, drain rate "
    "(the total and each worker pool's, or one pool's)",
    responses=errors(422, 503),
)
async def queue(
    service: Service,
    pool: str | None = Query(
        None,
        pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        description="Only the pipelines of this worker pool (LANGSCALE_WORKER_POOL): what "
        "the pool's autoscaler reads. A pool nobody announced has all zero.",
    ),
) -> dict[str, Any]:
    # Open without a key: KEDA's metrics-api trigger and dashboards read it.
    if pool is not None:
        return (await service.queue_stats(pool=pool)).as_dict()
    total = (await service.queue_stats()).as_dict()
    # Each pool's figures from the same reading (what `langscale doctor` compares each
    # pool's autoscaling metric with).
    pools = await service.pool_stats(max_age=60.0)
    total["pools"] = {
        str(p.pool): {k: v for k, v in p.as_dict().items() if k not in ("queue", "pool")}
        | {"pipelines": sorted(s.pipeline for s in p.pipelines)}
        for p in pools
    }
    return total


@router.get(
    "/metrics",
    tags=["system"],
    summary="Prometheus metrics: requests, runs submitted, admission, queue figures",
    response_class=Response,
)
async def prometheus_metrics(service: Service) -> Response:
    # Open without a key, as /v1/queue: Prometheus scrapes it. The queue gauges are read
    # now (one O(log n) Redis call), so every replica reports the same figures: dashboards
    # and alerts aggregate them with max by (queue).
    try:
        stats = await service.pool_stats()
    except (RedisError, OSError):
        metrics.QUEUE_READ_ERRORS.inc()
        stats = None
    metrics.set_queue_gauges(stats)
    with contextlib.suppress(RedisError, OSError):
        metrics.WEBHOOK_PENDING.set(await service.runs.webhooks_pending())
    return Response(generate_latest(metrics.GATEWAY), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/pipelines",
    tags=["runs"],
    summary="Pipelines with their JSON schemas",
    responses=errors(503),
)
async def list_pipelines(service: Service, caller: Caller) -> dict[str, Any]:
    pipelines = await service.catalog.all()
    return {"pipelines": [known.definition.model_dump() for _, known in sorted(pipelines.items())]}
