"""``langscale worker``: load pipelines, publish them, and run the arq worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

from langscale import catalog, keys, metrics, telemetry
from langscale.contract import JOB_FUNCTION, ErrorInfo, RunState
from langscale.redis import arq_redis_settings, dump_job, load_job
from langscale.runs import RunStore
from langscale.settings import Settings
from langscale_worker import http, outgoing
from langscale_worker.jobs import CTX_RUNTIME, WorkerRuntime, run_pipeline
from langscale_worker.registry import Pipeline, PipelineLoadError, load_registry
from langscale_worker.worker import LangscaleWorker

logger = logging.getLogger(__name__)


class PipelineWorker(LangscaleWorker):
    """The worker with langscale's run bookkeeping around arq's job lifecycle."""

    def __init__(self, settings: Settings, pipelines: dict[str, Pipeline], **kwargs: Any):
        self.settings = settings
        self.pipelines = pipelines
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._heartbeat: asyncio.Task[None] | None = None
        self._http: asyncio.Task[None] | None = None
        from arq.worker import func

        super().__init__(
            functions=[func(run_pipeline, name=JOB_FUNCTION)],
            queue_name=settings.queue_name,
            redis_settings=arq_redis_settings(settings),
            wake_channel=keys.wake_channel(settings.queue_name),
            leases_key=keys.leases_key(settings.queue_name),
            run_key_prefix=keys.run_key(""),
            lease_seconds=settings.lease_seconds,
            max_jobs=settings.worker_concurrency,
            # Runs enforce their own timeout (jobs.run_pipeline records a `timeout` error);
            # LangscaleWorker.run_job does not use arq's, given here for arq's bookkeeping.
            job_timeout=settings.longest_job_timeout + 5,
            max_tries=settings.max_attempts,
            # SIGTERM: take no new job, let running ones finish for the drain window, then
            # cancel the rest, which go back to the queue at once (jobs.run_pipeline).
            job_completion_wait=int(settings.drain_timeout),
            # Results live in the run's hash (langscale.runs); arq's own copy is not kept.
            keep_result=0,
            poll_delay=settings.poll_interval,
            job_serializer=dump_job,
            job_deserializer=load_job,
            on_startup=self._on_startup,
            on_shutdown=self._on_shutdown,
            log_results=False,
            **kwargs,
        )
        self.subscriptions[keys.CANCEL_CHANNEL] = self._on_cancel

    def _on_cancel(self, data: bytes) -> None:
        runtime: WorkerRuntime | None = self.ctx.get(CTX_RUNTIME)
        if runtime is not None:
            runtime.cancel(data.decode())

    @property
    def runs(self) -> RunStore:
        return self.ctx[CTX_RUNTIME].runs

    async def _on_startup(self, ctx: dict[str, Any]) -> None:
        runs = RunStore.from_settings(ctx["redis"], self.settings)
        # Outgoing LLM calls (shared rate limit, cache, replay) use this pool too.
        outgoing.bind(ctx["redis"], self.settings)
        metrics.register_outgoing(lambda: (bound := outgoing.bound()) and bound.stats)
        ctx[CTX_RUNTIME] = WorkerRuntime(
            settings=self.settings, pipelines=self.pipelines, runs=runs, worker_id=self.worker_id
        )
        await check_redis_durability(ctx["redis"])
        await self._publish()
        self._heartbeat = asyncio.create_task(self._publish_forever())
        if self.settings.worker_http_port:
            stale_after = max(10.0, 5 * self.settings.poll_interval)
            app = http.create_app(lambda: self.last_iteration, stale_after)
            self._http = http.start(
                app, self.settings.worker_http_port, self.settings.worker_http_host
            )
        logger.info(
            "worker ready",
            extra={"worker_id": self.worker_id, "pipelines": sorted(self.pipelines)},
        )

    async def _on_shutdown(self, ctx: dict[str, Any]) -> None:
        for task in (self._heartbeat, self._http):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await catalog.unregister_worker(ctx["redis"], self.worker_id)

    async def _publish(self) -> None:
        definitions = [pipeline.definition() for pipeline in self.pipelines.values()]
        await catalog.publish(self.pool, self.worker_id, definitions)

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pipeline_heartbeat)
            try:
                await self._publish()
            except Exception as error:  # keep serving; the next beat retries
                logger.warning("pipeline heartbeat failed: %s", error)

    async def attempts_exhausted(self, job_id: str) -> None:
        """Every attempt so far died with its worker or was stopped: end the run rather
        than loop (the finishing write also takes the job off the queue)."""
        error = ErrorInfo(
            type="run_lost",
            message=f"the run's worker died or stopped on each of its "
            f"{self.settings.max_attempts} attempts",
        )
        await self.runs.finish(job_id, RunState.FAILED, error=error)


async def check_redis_durability(redis: Any) -> None:
    """Warn when Redis could lose queued runs: no persistence, or eviction allowed."""
    try:
        config = await redis.config_get("appendonly", "save", "maxmemory-policy")
    except Exception as error:  # managed Redis often forbids CONFIG
        logger.warning("cannot check Redis persistence settings: %s", error)
        return
    config = {_text(k): _text(v) for k, v in config.items()}
    if config.get("appendonly") != "yes" and not config.get("save"):
        logger.warning(
            "Redis has no persistence (appendonly no, no save points): queued runs are lost "
            "if it restarts; production needs appendonly yes"
        )
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        logger.warning(
            "Redis maxmemory-policy is %s: it may evict queued jobs and run state under "
            "memory pressure; production needs noeviction",
            config["maxmemory-policy"],
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def build_worker(settings: Settings, **kwargs: Any) -> PipelineWorker:
    """Load every pipeline (a bad import path raises PipelineLoadError) and build the
    worker; models and pipelines are built before it takes any job."""
    return PipelineWorker(settings, load_registry(settings.pipelines), **kwargs)


def run(settings: Settings) -> None:
    logging.getLogger("arq").setLevel(logging.WARNING)  # arq logs job arguments at INFO
    telemetry.setup_tracing("langscale-worker")
    try:
        worker = build_worker(settings)
    except PipelineLoadError as error:
        raise SystemExit(f"langscale worker: {error}") from None
    worker.run()
