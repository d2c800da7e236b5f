"""What the runs API and the LangServe routes decide: validate, admit, submit, wait, cancel.

Decisions only: every Redis read and write goes through the lifecycle's
:class:`~langscale.lifecycle.RunStore`.
"""

from __future__ import annotations

import asyncio
import base64
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
from langscale.lifecycle import (
    ListPage,
    ListQuery,
    PipelineStats,
    QueueStats,
    RunStore,
    StreamHub,
)
from langscale.settings import Settings
from langscale_gateway.auth import Principal
from langscale_gateway.catalog import PipelineCatalog
from langscale_gateway.drain import Drain
from langscale_gateway.errors import ApiError
from langscale_gateway.threads import resolve_thread
from langscale_gateway.waiter import RunWaiter
from langscale_gateway.webhooks import Policy, check_submitted

# How long one reading of the queue figures serves (admission's Retry-After, metrics):
# one Redis call per interval per gateway, not per request.
QUEUE_READING_SECONDS = 0.25


@dataclass(frozen=True)
class SubmitResult:
    run_ids: list[str]
    state: RunState = RunState.QUEUED
    replayed: bool = False  # an Idempotency-Key seen before: its run, as it is now
    thread_id: str | None = None
    cancelled: tuple[str, ...] = ()  # the thread's runs an interrupt or rollback cancelled


@dataclass
class RunService:
    settings: Settings
    runs: RunStore
    catalog: PipelineCatalog
    waiter: RunWaiter
    hub: StreamHub
    drain: Drain
    webhooks: Policy = field(default_factory=lambda: Policy({}, {}, frozenset(), ()))
    tracer: trace.Tracer = field(default_factory=telemetry.get_tracer, repr=False)
    _reading: tuple[float, list[PipelineStats], dict[str, str]] | None = field(
        default=None, repr=False
    )

    async def queue_stats(self, max_age: float = 0.0, pool: str | None = None) -> QueueStats:
        """The queue figures of every pipeline, or of one worker pool's (a pool nobody has
        announced has none: all zero)."""
        stats, pools = await self._queue_reading(max_age)
        chosen = [s for s in stats if pool is None or pools.get(s.pipeline) == pool]
        return QueueStats.total(self.settings.queue_name, chosen, pool)

    async def pool_stats(self, max_age: float = 0.0) -> list[QueueStats]:
        """One reading per worker pool that serves a known pipeline."""
        stats, pools = await self._queue_reading(max_age)
        return [
            QueueStats.total(
                self.settings.queue_name, [s for s in stats if pools[s.pipeline] == pool], pool
            )
            for pool in sorted(set(pools.values()))
        ]

    async def _queue_reading(self, max_age: float) -> tuple[list[PipelineStats], dict[str, str]]:
        now = time.monotonic()
        if self._reading is None or now - self._reading[0] > max_age:
            known = await self.catalog.all()
            stats = await self.runs.pipeline_stats(sorted(known))
            pools = {name: p.definition.pool for name, p in known.items()}
            self._reading = (now, stats, pools)
        return self._reading[1], self._reading[2]

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
        thread_id: str | None = None,
        multitask_strategy: str | None = None,
        stream_options: dict[str, list[str]] | None = None,
        webhook: str | None = None,
    ) -> SubmitResult:
        """Validate every input, then admit and enqueue all runs or none, in one step."""
        thread, configs = resolve_thread(thread_id, multitask_strategy, configs)
        paths = input_paths or ["$.input"] * len(inputs)
        for value, config, path in zip(inputs, configs, paths, strict=True):
            self.check_storable(value, path)
            self.check_storable(config, "$.config")
        if metadata:
            self.check_storable(metadata, "$.metadata")
        known = await self.catalog.get(pipeline)
        for value, path in zip(inputs, paths, strict=True):
            known.check_input(value, path)
        if thread is None and known.definition.needs_thread:
            raise ApiError(
                422,
                "thread_required",
                f"pipeline {pipeline!r} keeps a chat history per thread: name one with "
                "thread_id (or config.configurable.session_id)",
            )
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise ApiError(422, "invalid_idempotency_key", "Idempotency-Key: 1 to 255 characters")
        webhook = await check_submitted(self.webhooks, caller.tenant, webhook)
        partition = self.runs.partition_for(
            caller.tenant, idempotency_key, thread.thread_id if thread else None
        )
        run_ids = self.runs.new_run_ids(len(inputs), partition)
        specs = [
            JobSpec(
                run_id=run_id,
                pipeline=pipeline,
                input=value,
                config=config,
                stream=stream,
                stream_options=stream_options or {},
                tenant=caller.tenant,
            )
            for run_id, value, config in zip(run_ids, inputs, configs, strict=True)
        ]
        idempotency = None
        if idempotency_key is not None:
            idempotency = (
                idempotency_key,
                _request_hash(
                    pipeline,
                    inputs,
                    configs,
                    metadata,
                    stream,
                    (thread.thread_id, thread.strategy) if thread else None,
                ),
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
            fields = {"webhook": webhook} if webhook else None
            if thread is None:
                submitted = await self.runs.submit(
                    specs,
                    tenant=caller.tenant,
                    metadata=metadata,
                    streamed=stream is not StreamMode.OFF,
                    idempotency=idempotency,
                    fields=fields,
                )
            else:
                if idempotency is not None:
                    holder = await self.runs.guard_idempotency(
                        caller.tenant, idempotency, thread.thread_id, run_ids[0]
                    )
                    if holder is not None:
                        raise _idempotency_conflict(holder)
                submitted = await self.runs.submit_to_thread(
                    specs,
                    thread.thread_id,
                    thread.strategy,
                    tenant=caller.tenant,
                    metadata=metadata,
                    streamed=stream is not StreamMode.OFF,
                    idempotency=idempotency,
                    fields=fields,
                )
        if submitted.outcome == "queued":
            metrics.RUNS_SUBMITTED.labels(pipeline).inc(len(specs))
            return SubmitResult(
                submitted.run_ids,
                thread_id=thread.thread_id if thread else None,
                cancelled=submitted.cancelled,
            )
        if submitted.outcome == "busy":
            raise ApiError(
                409,
                "thread_busy",
                "the thread has a run that has not ended (multitask_strategy reject)",
                run_id=submitted.run_ids[0],
                state=submitted.state.value if submitted.state else None,
            )
        if submitted.outcome == "thread_full":
            raise ApiError(
                429,
                "thread_full",
                f"the thread holds {submitted.due} runs that have not ended (limit "
                f"{self.settings.thread_max_pending}); retry later",
                headers={"Retry-After": "5"},
                retry_after=5,
            )
        if submitted.outcome == "replay":
            return SubmitResult(submitted.run_ids, submitted.state or RunState.QUEUED, True)
        if submitted.outcome == "conflict":
            raise _idempotency_conflict(submitted.run_ids[0])
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

    async def list_runs(
        self,
        caller: Principal,
        *,
        limit: int,
        states: Sequence[RunState] = (),
        pipeline: str | None = None,
        metadata: Sequence[str] = (),
        created_after: float | None = None,
        created_before: float | None = None,
        tenant: str | None = None,
        cursor: str | None = None,
    ) -> ListPage:
        """The caller's runs (an admin's: every tenant's, or ``tenant``'s), newest first."""
        if tenant is not None and tenant != caller.tenant:
            require_admin(caller)
        pairs = []
        for item in metadata:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ApiError(
                    422, "invalid_request", f"metadata filters are key=value, got {item!r}"
                )
            pairs.append((key, value))
        query = ListQuery(
            tenant=tenant if tenant is not None else (None if caller.admin else caller.tenant),
            limit=limit,
            states=frozenset(states),
            pipeline=pipeline,
            metadata=tuple(pairs),
            created_after=None if created_after is None else math.ceil(created_after * 1000),
            created_before=None if created_before is None else math.floor(created_before * 1000),
            cursor=decode_cursor(cursor) if cursor else None,
            indexed_metadata=self.runs.config.indexed_metadata,
        )
        return await self.runs.list_runs(query)

    async def wait_for(self, caller: Principal, run_id: str, seconds: float) -> RunRecord:
        """``GET /v1/runs/{id}?wait=S``: the run once it ended, or as it is after ``seconds``
        (or when the gateway starts draining). Long-polls share the process's one pub/sub
        subscription (the waiter), not a Redis connection each."""
        record = await self.get(caller, run_id)
        if record.state.is_final or seconds <= 0:
            return record
        (fresh,) = await self.waiter.wait([run_id], seconds)
        if fresh is None:
            raise ApiError(404, "run_not_found", f"no run {run_id} (unknown or expired)")
        return fresh

    async def forget(self, caller: Principal, run_id: str) -> None:
        """Delete an ended run now (result, stream, listing entries); 409 while it runs."""
        record = await self.get(caller, run_id)
        before = await self.runs.forget(record)
        if before is None:
            raise ApiError(404, "run_not_found", f"no run {run_id} (unknown or expired)")
        if not before.is_final:
            raise ApiError(
                409,
                "run_not_finished",
                f"run {run_id} is {before.value}: cancel it first, or wait for its end",
                state=before.value,
            )

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
        """How long an invoke waits for its runs: until they end (as LangServe), bounded by
        LANGSCALE_MAX_INVOKE_TIMEOUT; a request may only lower it."""
        if requested is None:
            return self.settings.max_invoke_timeout
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


def encode_cursor(position: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]}:{position[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, valid: Callable[[str], bool] = is_valid_run_id) -> tuple[int, str]:
    """A listing's cursor: (created ms, the id of the last one listed, checked by ``valid``)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, last = text.partition(":")
        if not valid(last):
            raise ValueError(last)
        return int(created), last
    except (ValueError, UnicodeDecodeError):
        raise ApiError(
            422, "invalid_cursor", "cursor must be a next_cursor this API returned"
        ) from None


def require_admin(caller: Principal) -> None:
    if not caller.admin:
        raise ApiError(403, "forbidden", "this needs an admin API key")


def _idempotency_conflict(run_id: str) -> ApiError:
    return ApiError(
        409,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
        run_id=run_id,
    )


def _request_hash(
    pipeline: str,
    inputs: Sequence[Any],
    configs: Sequence[dict[str, Any]],
    metadata: dict[str, Any] | None,
    stream: StreamMode,
    thread: tuple[str, str] | None = None,
) -> str:
    """What makes two requests one: their body, and for a thread's runs the thread and the
    multitask strategy (a request without a thread hashes as it always did)."""
    parts: list[Any] = [pipeline, list(inputs), list(configs), metadata or {}, stream.value]
    if thread is not None:
        parts.append(list(thread))
    body = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]
