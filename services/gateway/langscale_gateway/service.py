"""Submitting runs and waiting for them: what the runs API and LangServe routes share."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from langscale import keys, metrics, telemetry
from langscale.contract import (
    JobSpec,
    RunRecord,
    RunState,
    StreamMode,
    is_valid_run_id,
    new_run_id,
)
from langscale.queue import QueueMonitor, QueueStats
from langscale.runs import RunStore
from langscale.settings import Settings
from langscale_gateway.auth import Principal
from langscale_gateway.catalog import PipelineCatalog
from langscale_gateway.errors import ApiError
from langscale_gateway.waiter import RunWaiter

# How long one reading of the queue serves admission decisions: one Redis call per
# interval per gateway, not per request.
ADMISSION_READING_SECONDS = 0.25


@dataclass
class RunService:
    settings: Settings
    runs: RunStore
    catalog: PipelineCatalog
    waiter: RunWaiter
    queue: QueueMonitor
    tracer: trace.Tracer = field(default_factory=telemetry.get_tracer, repr=False)
    _reading: tuple[float, QueueStats] | None = field(default=None, repr=False)

    async def queue_stats(self, max_age: float = 0.0) -> QueueStats:
        now = time.monotonic()
        if self._reading is None or now - self._reading[0] > max_age:
            self._reading = (now, await self.queue.read())
        return self._reading[1]

    async def admit(self, count: int) -> None:
        """Refuse new runs with 429 while the queue's ready depth is over the limit."""
        limit = self.settings.admission_max_ready
        if not limit:
            return
        stats = await self.queue_stats(ADMISSION_READING_SECONDS)
        if stats.ready + count <= limit:
            return
        excess = stats.ready + count - limit
        # Time for the fleet to drain the excess at its current pace (30 s if stalled).
        seconds = excess / stats.completed_per_second if stats.completed_per_second else 30
        retry_after = min(300, max(1, math.ceil(seconds)))
        metrics.ADMISSION_REJECTED.inc()
        raise ApiError(
            429,
            "queue_full",
            f"the queue holds {stats.ready} ready runs (limit {limit}); retry later",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
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
    ) -> list[str]:
        """Validate every input, admit, then enqueue all runs or none."""
        known = await self.catalog.get(pipeline)
        paths = input_paths or ["$.input"] * len(inputs)
        for value, path in zip(inputs, paths, strict=True):
            known.check_input(value, path)
        specs = [
            JobSpec(
                run_id=new_run_id(),
                pipeline=pipeline,
                input=value,
                config=config,
                stream=stream,
                tenant=caller.tenant,
            )
            for value, config in zip(inputs, configs, strict=True)
        ]
        reserved = None
        if idempotency_key is not None:
            request_hash = _request_hash(pipeline, inputs, configs, metadata, stream)
            existing = await self._reserve(caller, idempotency_key, specs[0].run_id, request_hash)
            if existing is not None:  # a replay: the same run, even when the queue is full
                return [existing]
            reserved = keys.idempotency_key(caller.tenant, idempotency_key)
        try:
            await self.admit(len(inputs))
            await self._send(specs, metadata, caller.tenant)
        except BaseException:
            if reserved:  # nothing was queued: free the key for the client's retry
                await self.runs.redis.delete(reserved)
            raise
        return [spec.run_id for spec in specs]

    async def _send(
        self, specs: list[JobSpec], metadata: dict[str, Any] | None, tenant: str
    ) -> None:
        """Enqueue under a PRODUCER span whose W3C context (traceparent, tracestate,
        baggage) each job carries to the worker's CONSUMER span."""
        queue = self.settings.queue_name
        attributes: dict[str, str | int] = {
            "messaging.system": "arq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": queue,
            "langscale.pipeline": specs[0].pipeline,
        }
        if len(specs) == 1:
            attributes["messaging.message.id"] = specs[0].run_id
            attributes["langscale.run.id"] = specs[0].run_id
        else:
            attributes["messaging.batch.message_count"] = len(specs)
        with self.tracer.start_as_current_span(
            f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            for spec in specs:
                propagate.inject(spec.trace_context)
            await self.runs.enqueue(specs, metadata, tenant=tenant)
        metrics.RUNS_SUBMITTED.labels(specs[0].pipeline).inc(len(specs))

    async def _reserve(
        self, caller: Principal, key: str, run_id: str, request_hash: str
    ) -> str | None:
        """Bind an Idempotency-Key to a new run; the run it already names (same request),
        or 409 (another request). None: the key is new and now bound to ``run_id``."""
        if not 1 <= len(key) <= 255:
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key: 1 to 255 characters")
        redis_key = keys.idempotency_key(caller.tenant, key)
        value = f"{run_id} {request_hash}"
        redis = self.runs.redis
        if await redis.set(redis_key, value, nx=True, ex=self.settings.idempotency_window):
            return None
        stored = await redis.get(redis_key)
        if stored is None:  # expired in between: take it
            await redis.set(redis_key, value, ex=self.settings.idempotency_window)
            return None
        existing_run, _, existing_hash = stored.decode().partition(" ")
        if existing_hash != request_hash:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
                run_id=existing_run,
            )
        return existing_run

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

    async def wait(self, run_ids: Sequence[str], timeout: float) -> list[RunRecord]:
        records = await self.waiter.wait(run_ids, timeout)
        missing = [run_id for run_id, r in zip(run_ids, records, strict=True) if r is None]
        if missing:  # expired between enqueue and now: only with a tiny result TTL
            raise ApiError(404, "run_not_found", f"run {missing[0]} expired before it ended")
        return [r for r in records if r is not None]


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
