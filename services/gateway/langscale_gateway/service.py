"""What the runs API and the LangServe routes decide: validate, admit, submit, wait, cancel.

Decisions only: every Redis read and write goes through the lifecycle's
:class:`~langscale.lifecycle.RunStore`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from langscale import metrics, telemetry
from langscale.contract import (
    JobSpec,
    RunRecord,
    RunState,
    StreamMode,
    is_valid_run_id,
    storable_problems,
)
from langscale.lifecycle import QueueStats, RunStore, StreamHub
from langscale.settings import Settings
from langscale_gateway.auth import Principal
from langscale_gateway.catalog import PipelineCatalog
from langscale_gateway.drain import Drain
from langscale_gateway.errors import ApiError
from langscale_gateway.waiter import RunWaiter

# How long one reading of the queue figures serves (admission's Retry-After, metrics):
# one Redis call per interval per gateway, not per request.
QUEUE_READING_SECONDS = 0.25


@dataclass(frozen=True)
class SubmitResult:
    run_ids: list[str]
    state: RunState = RunState.QUEUED
    replayed: bool = False  # an Idempotency-Key seen before: its run, as it is now


@dataclass
class RunService:
    settings: Settings
    runs: RunStore
    catalog: PipelineCatalog
    waiter: RunWaiter
    hub: StreamHub
    drain: Drain
    tracer: trace.Tracer = field(default_factory=telemetry.get_tracer, repr=False)
    _reading: tuple[float, QueueStats] | None = field(default=None, repr=False)

    async def queue_stats(self, max_age: float = 0.0) -> QueueStats:
        now = time.monotonic()
        if self._reading is None or now - self._reading[0] > max_age:
            pipelines = sorted(await self.catalog.all())
            stats = await self.runs.pipeline_stats(pipelines)
            self._reading = (now, QueueStats.total(self.settings.queue_name, stats))
        return self._reading[1]

    def check_storable(self, value: Any, path: str) -> None:
        """422 unless ``value`` can be stored with a run and read back unchanged."""
        problems = storable_problems(value, path, self.settings.max_input_depth)
        if problems:
            raise ApiError(
                422,
                "invalid_input",
                "the request holds values a run cannot store (see errors)",
                errors=problems,
            )

    async def submit(
        self,
        caller: Principal,
        pipeline: str,
        inputs: Sequence[Any],
        configs: Sequence[dict[str, Any]],
        metadata: dict[str, Any] | None = None,
        input_paths: Sequence[str] | None = None,
        stream: StreamMode = StreamMode.OFF,
        idempotency_key: str | None = None,
    ) -> SubmitResult:
        """Validate every input, then admit and enqueue all runs or none, in one step."""
        paths = input_paths or ["$.input"] * len(inputs)
        for value, config, path in zip(inputs, configs, paths, strict=True):
            self.check_storable(value, path)
            self.check_storable(config, "$.config")
        if metadata:
            self.check_storable(metadata, "$.metadata")
        known = await self.catalog.get(pipeline)
        for value, path in zip(inputs, paths, strict=True):
            known.check_input(value, path)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key: 1 to 255 characters")
        partition = self.runs.partition_for(caller.tenant, idempotency_key)
        run_ids = self.runs.new_run_ids(len(inputs), partition)
        specs = [
            JobSpec(
                run_id=run_id,
                pipeline=pipeline,
                input=value,
                config=config,
                stream=stream,
                tenant=caller.tenant,
            )
            for run_id, value, config in zip(run_ids, inputs, configs, strict=True)
        ]
        idempotency = None
        if idempotency_key is not None:
            idempotency = (
                idempotency_key,
                _request_hash(pipeline, inputs, configs, metadata, stream),
            )
        # A PRODUCER span whose W3C context each job carries to the worker's CONSUMER span.
        attributes = telemetry.messaging_attributes(
            "send", pipeline, run_ids[0] if len(run_ids) == 1 else None, batch=len(run_ids)
        )
        with self.tracer.start_as_current_span(
            f"send {pipeline}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            for spec in specs:
                propagate.inject(spec.trace_context)
            submitted = await self.runs.submit(
                specs,
                tenant=caller.tenant,
                metadata=metadata,
                streamed=stream is not StreamMode.OFF,
                idempotency=idempotency,
            )
        if submitted.outcome == "queued":
            metrics.RUNS_SUBMITTED.labels(pipeline).inc(len(specs))
            return SubmitResult(submitted.run_ids)
        if submitted.outcome == "replay":
            return SubmitResult(submitted.run_ids, submitted.state or RunState.QUEUED, True)
        if submitted.outcome == "conflict":
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
                run_id=submitted.run_ids[0],
            )
        raise await self._queue_full(pipeline, submitted.due, len(specs))

    async def _queue_full(self, pipeline: str, due: int, count: int) -> ApiError:
        """429 with the time the fleet needs to drain the excess at its current pace."""
        metrics.ADMISSION_REJECTED.inc()
        limit = self.settings.admission_max_ready
        try:
            stats = await self.queue_stats(QUEUE_READING_SECONDS)
            rate = next(
                (p.completed_per_second for p in stats.pipelines if p.pipeline == pipeline), 0.0
            )
        except Exception:  # the refusal stands without a rate: a safe default wait
            rate = 0.0
        excess = max(1, due * self.runs.config.partitions + count - limit)
        retry_after = min(300, max(1, math.ceil(excess / rate))) if rate else 30
        return ApiError(
            429,
            "queue_full",
            f"the {pipeline} queue holds {due} ready runs (limit {limit}); retry later",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )

    async def get(self, caller: Principal, run_id: str) -> RunRecord:
        if not is_valid_run_id(run_id):
            raise ApiError(
                422, "invalid_run_id", "a run id is a UUID, e.g. as returned by POST /v1/runs"
            )
        record = await self.runs.get(run_id)
        if record is None or not caller.can_see(record.tenant):
            # Another tenant's run is indistinguishable from no run at all.
            raise ApiError(404, "run_not_found", f"no run {run_id} (unknown or expired)")
        return record

    async def cancel(
        self, caller: Principal, run_id: str, reason: str = "cancelled by the client"
    ) -> RunRecord:
        """Cancel a queued or running run; 409 if it had already ended."""
        await self.get(caller, run_id)
        before = await self.runs.cancel(run_id, reason)
        if before is None:
            raise ApiError(404, "run_not_found", f"no run {run_id} (unknown or expired)")
        if before.is_final:
            raise ApiError(
                409,
                "run_already_finished",
                f"run {run_id} already ended: {before.value}",
                state=before.value,
            )
        return await self.get(caller, run_id)

    async def cancel_quietly(self, run_ids: Sequence[str], reason: str) -> None:
        """Cancel runs whose client went away (those that already ended are left as is)."""
        for run_id in run_ids:
            await self.runs.cancel(run_id, reason)

    async def failed_runs(self, caller: Principal, limit: int) -> list[RunRecord]:
        require_admin(caller)
        ids = await self.runs.failed_run_ids(limit)
        return [r for r in await self.runs.get_many(ids) if r is not None]

    async def requeue_failed(self, caller: Principal, run_id: str) -> RunRecord:
        require_admin(caller)
        record = await self.get(caller, run_id)
        if record.state is not RunState.FAILED:
            raise ApiError(
                409, "run_not_failed", f"only failed runs are re-queued; this one is {record.state}"
            )
        done = await self.runs.requeue_failed(run_id)
        if done < 0:
            raise ApiError(409, "job_expired", "the run's job is no longer kept; submit it again")
        if done == 0:
            raise ApiError(409, "run_not_failed", "the run changed state meanwhile")
        return await self.get(caller, run_id)

    def leaves_cancel(self, on_disconnect: str | None) -> bool:
        policy = on_disconnect or self.settings.disconnect_policy
        if policy not in ("cancel", "continue"):
            raise ApiError(422, "invalid_request", "on_disconnect must be cancel or continue")
        return policy == "cancel"

    def invoke_timeout(self, requested: float | None) -> float:
        if requested is None:
            return self.settings.invoke_timeout
        if not 0 < requested <= self.settings.max_invoke_timeout:
            raise ApiError(
                422,
                "invalid_timeout",
                f"timeout must be > 0 and <= {self.settings.max_invoke_timeout:g} seconds",
            )
        return requested

    async def wait(
        self,
        run_ids: Sequence[str],
        timeout: float,
        *,
        queued: bool = False,
        wake: asyncio.Event | None = None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> list[RunRecord]:
        """The runs once all ended, or as they are when ``timeout`` passes or ``give_up()``
        (see RunWaiter.wait); when the gateway's drain window ends first, 503 naming them
        (they go on)."""
        records = await self.waiter.wait(
            run_ids, timeout, queued=queued, wake=wake, give_up=give_up
        )
        missing = [run_id for run_id, r in zip(run_ids, records, strict=True) if r is None]
        if missing:  # expired between enqueue and now: only with a tiny result TTL
            raise ApiError(404, "run_not_found", f"run {missing[0]} expired before it ended")
        done = [r for r in records if r is not None]
        if self.drain.expired.is_set() and not all(r.state.is_final for r in done):
            raise ApiError(
                503,
                "gateway_restarting",
                f"this gateway is restarting; the runs go on: poll GET /v1/runs/{run_ids[0]}",
                headers={"Retry-After": "1"},
                run_ids=list(run_ids),
            )
        return done


def require_admin(caller: Principal) -> None:
    if not caller.admin:
        raise ApiError(403, "forbidden", "this needs an admin API key")


def _request_hash(
    pipeline: str,
    inputs: Sequence[Any],
    configs: Sequence[dict[str, Any]],
    metadata: dict[str, Any] | None,
    stream: StreamMode,
) -> str:
    body = json.dumps(
        [pipeline, list(inputs), list(configs), metadata or {}, stream.value],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()[:32]
