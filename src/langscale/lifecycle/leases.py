"""The worker's side of the protocol: claim runs, hold their leases, write as an attempt.

A worker process is one :class:`Leases`. Every write it makes for a run presents the fence
token its claim returned (:class:`Claim`): once the run was taken over (its lease lapsed,
a client cancelled it), the write is refused in Redis and the worker learns it is stale.
Writes of many runs go in one call per partition (the caller batches them per loop turn).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from redis.asyncio import Redis

from langscale.contract import ErrorInfo, EventType, JobSpec, PipelineDefinition
from langscale.keys import partition_of
from langscale.lifecycle.config import LifecycleConfig
from langscale.lifecycle.scripts import Scripts
from langscale.lifecycle.threads import (
    HistoryEntry,
    ThreadKeys,
    read_history,
    thread_name,
)

logger = logging.getLogger(__name__)


class StaleAttempt(Exception):
    """Redis refused a write of an attempt: another attempt holds the run now (its lease
    lapsed, or a client cancelled it). The attempt should stop."""


@dataclass(frozen=True)
class Claim:
    """One started attempt of a run, and the token that proves it is the current one."""

    run_id: str
    pipeline: str
    fence: str
    attempt: int
    job: JobSpec
    queued_seconds: float  # since the run was enqueued (Redis clock)
    isolated: bool = False  # a suspect, run alone (crash isolation)

    @property
    def partition(self) -> int:
        return partition_of(self.run_id)


# --- what an attempt ended with (the typed outcome the worker applies) --------------------


@dataclass(frozen=True)
class Succeeded:
    output_json: str


@dataclass(frozen=True)
class Failed:
    error: ErrorInfo


@dataclass(frozen=True)
class Retry:
    """A retriable error: the run is due again after ``delay`` seconds."""

    error: ErrorInfo
    delay: float


@dataclass(frozen=True)
class Requeue:
    """The worker stops before the attempt ended: the run goes back to the front at once."""

    reason: str


@dataclass(frozen=True)
class Abandoned:
    """Nothing to write: a client cancelled the run, or another attempt holds it now."""

    reason: Literal["cancelled", "stale"]


Outcome = Succeeded | Failed | Retry | Requeue | Abandoned


class Applied(IntEnum):
    """What Redis did with one of an attempt's writes."""

    APPLIED = 1
    ALREADY = 0  # a repeated call (the reply of the first was lost): nothing more to do
    STALE = -1  # refused: the attempt no longer holds the run


@dataclass(frozen=True)
class ClaimResult:
    mode: Literal["runs", "isolated", "isolating"]
    claims: list[Claim]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# (run id, fence token, events, number of the first event within its attempt)
AppendBatch = tuple[str, str, Sequence[tuple[EventType, str]], int]


class Leases:
    """One worker's claims, leases and fenced writes."""

    def __init__(
        self,
        redis: Redis,
        config: LifecycleConfig,
        worker_id: str,
        pipelines: Sequence[str],
    ) -> None:
        self.redis = redis
        self.config = config
        self.worker_id = worker_id
        self.pipelines = list(pipelines)
        self._scripts = Scripts(redis)
        self._header = config.header

    def _partition_keys(self, partition: int) -> list[str]:
        keyspace = self.config.keyspace
        return [keyspace.clock(partition), keyspace.isolator(partition)]

    async def claim(self, partition: int, slots: int, idle: bool) -> ClaimResult:
        """Start up to ``slots`` due runs; with ``idle`` (nothing running here) and crash
        isolation on, possibly one suspect to run alone instead."""
        reply = await self._replicated(
            "claim",
            self._partition_keys(partition),
            [
                *self._header.for_partition(partition),
                self.worker_id,
                slots,
                self.config.lease_ms,
                1 if idle and self.config.crash_isolation else 0,
                *self.pipelines,
            ],
        )
        mode = _text(reply[0])
        claims = []
        for i in range(1, len(reply), 6):
            run_id, fence, attempt, job, waited, pipeline = (_text(v) for v in reply[i : i + 6])
            claims.append(
                Claim(
                    run_id=run_id,
                    pipeline=pipeline,
                    fence=fence,
                    attempt=int(attempt),
                    job=JobSpec.from_stored(run_id, pipeline, job or "{}"),
                    queued_seconds=max(0, int(waited)) / 1000,
                    isolated=mode == "isolated",
                )
            )
        return ClaimResult(mode, claims)  # type: ignore[arg-type]

    async def renew(self, partition: int, held: Iterable[Claim]) -> tuple[int, list[str]]:
        """Extend the leases of ``held`` and sweep the partition's lapsed leases.
        Returns (runs swept, ids of held runs this worker no longer holds)."""
        args: list[Any] = [
            *self._header.for_partition(partition),
            self.worker_id,
            self.config.lease_ms,
            1 if self.config.crash_isolation else 0,
            self.config.max_crashes,
            self.config.max_attempts,
            len(self.pipelines),
            *self.pipelines,
        ]
        for claim in held:
            args += [claim.pipeline, claim.run_id, claim.fence]
        reply = await self._scripts("renew", self._partition_keys(partition), args)
        return int(reply[0]), [_text(run_id) for run_id in reply[1:]]

    async def finish(
        self, partition: int, outcomes: Sequence[tuple[Claim, Outcome]]
    ) -> list[Applied]:
        """Apply attempts' outcomes in one call (abandoned ones write nothing)."""
        args: list[Any] = list(self._header.for_partition(partition))
        written: list[int] = []
        for index, (claim, outcome) in enumerate(outcomes):
            kind, a, b = _finish_args(outcome)
            if kind:
                args += [claim.run_id, claim.pipeline, claim.fence, kind, a, b]
                written.append(index)
        results = [Applied.ALREADY] * len(outcomes)
        if written:
            reply = await self._replicated("finish", [self.config.keyspace.clock(partition)], args)
            for index, value in zip(written, reply, strict=True):
                results[index] = Applied(int(value))
        return results

    async def append(
        self,
        partition: int,
        batches: Sequence[tuple[str, str, Sequence[tuple[EventType, str]]] | AppendBatch],
    ) -> list[int]:
        """Append attempts' events, given as (run id, fence token, events[, number of the
        first event in its attempt]), to their runs' streams in one call. Numbered events
        the run already has are skipped: a call retried after a lost reply repeats nothing.
        Per run: its last event number, 0 when it has no stream (nobody reads it), -1 when
        stale."""
        args: list[Any] = list(self._header.for_partition(partition))
        for run_id, fence, events, *numbered in batches:
            args += [run_id, fence, numbered[0] if numbered else -1, len(events)]
            for event_type, data in events:
                args += [event_type.value, data]
        reply = await self._scripts("append", [self.config.keyspace.clock(partition)], args)
        return [int(value) for value in reply]

    async def _replicated(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """A claim or finish; with ``LANGSCALE_REDIS_WAIT_REPLICAS``, acted on only once
        replicas have it (at most 1 s), so a failover cannot undo a start or an end the
        worker acts on. A replica late to answer is logged, and the worker goes on."""
        replicas = self.config.wait_replicas
        if not replicas:
            return await self._scripts(name, keys, args)
        reply, reached = await self._scripts.replicated(self.redis, name, keys, args, replicas)
        if reached < replicas:
            logger.warning(
                "%s reached %d of %d Redis replicas in time: a failover now could undo it",
                name,
                reached,
                replicas,
            )
        return reply

    async def recall(self, run_id: str, fence: str, digest: str) -> tuple[str, bytes | None] | None:
        """The replay slot of an LLM call of this attempt, and the answer an earlier attempt
        stored there. None: stale (the attempt no longer holds the run)."""
        keyspace = self.config.keyspace
        reply = await self._scripts(
            "replay",
            [keyspace.run(run_id), keyspace.replay(run_id)],
            [*self._header.for_partition(partition_of(run_id)), fence, digest],
        )
        if reply == -1:
            return None
        slot, answer = reply
        return _text(slot), (answer or None)

    async def remember(
        self, partition: int, answers: Sequence[tuple[str, str, str, str]]
    ) -> list[Applied]:
        """Store LLM answers, as (run id, fence token, slot, answer JSON), for later
        attempts to replay, in one call; each APPLIED or STALE."""
        args: list[Any] = list(self._header.for_partition(partition))
        for answer in answers:
            args += answer
        reply = await self._scripts("remember", [self.config.keyspace.clock(partition)], args)
        return [Applied(int(value)) for value in reply]

    async def link_trace(self, claim: Claim, span_context: str) -> str | None:
        """Record this attempt's span on the run; the previous attempt's span context
        ('' if none), or None when stale."""
        reply = await self._scripts(
            "trace_link",
            [self.config.keyspace.run(claim.run_id)],
            [*self._header.for_partition(claim.partition), claim.fence, span_context],
        )
        return None if reply == -1 else _text(reply)

    async def append_history(
        self, run_id: str, fence: str, tenant: str, thread_id: str, messages: Sequence[str]
    ) -> int:
        """Add messages (JSON each) to the history of the run's thread, as this attempt;
        what earlier attempts of the run added is replaced. Returns the history's length.
        Raises :class:`StaleAttempt` when the attempt no longer holds the run, ValueError
        when the run is not of that thread."""
        thread = ThreadKeys.of(self.config, tenant, thread_id)
        reply = int(
            await self._scripts(
                "history_append",
                [self.config.keyspace.run(run_id), thread.history, thread.thread],
                [
                    *self._header.for_partition(thread.partition),
                    run_id,
                    fence,
                    thread_name(tenant, thread_id),
                    self.config.history_max_messages,
                    self.config.thread_ttl,
                    *messages,
                ],
            )
        )
        if reply == -1:
            raise StaleAttempt(f"run {run_id} is held by another attempt")
        if reply == -2:
            raise ValueError(f"run {run_id} is not a run of thread {thread_id!r}")
        return reply

    async def append_partial(
        self, run_id: str, fence: str, tenant: str, thread_id: str, message: str | None
    ) -> int:
        """Add the partial answer (JSON; None: it had none) of an attempt an interrupt
        stopped to its thread's history, and let the thread's next run start. Returns the
        history's length; -1 when the attempt was not interrupted (or wrote it already),
        -3 when it came too late (the next run was due: nothing written). ValueError when
        the run is not of that thread."""
        thread = ThreadKeys.of(self.config, tenant, thread_id)
        reply = int(
            await self._scripts(
                "history_partial",
                [self.config.keyspace.run(run_id), thread.history, thread.thread, thread.queue],
                [
                    *self._header.for_partition(thread.partition),
                    run_id,
                    fence,
                    thread_name(tenant, thread_id),
                    self.config.history_max_messages,
                    self.config.thread_ttl,
                    message or "",
                ],
            )
        )
        if reply == -2:
            raise ValueError(f"run {run_id} is not a run of thread {thread_id!r}")
        return reply

    async def history(self, tenant: str, thread_id: str) -> list[HistoryEntry]:
        """A thread's history, oldest message first."""
        return await read_history(self.redis, self.config, tenant, thread_id)

    async def heartbeat(self, definitions: Sequence[PipelineDefinition]) -> int:
        """Say this worker lives and serves these pipelines. Returns live workers."""
        pairs: list[str] = []
        for definition in definitions:
            pairs += [definition.name, definition.model_dump_json()]
        return int(await self._registry(1, pairs))

    async def leave(self) -> None:
        """Say this worker is gone (its pipelines go when nobody else serves them)."""
        pairs: list[str] = []
        for name in self.pipelines:
            pairs += [name, ""]
        await self._registry(0, pairs)

    async def _registry(self, beat: int, pairs: list[str]) -> Any:
        keyspace = self.config.keyspace
        return await self._scripts(
            "registry_heartbeat",
            [
                keyspace.workers,
                keyspace.pipelines,
                keyspace.pipelines_seen,
                keyspace.pipelines_forgotten,
            ],
            [
                keyspace.served_prefix,
                self.worker_id,
                self.config.heartbeat_stale_ms,
                self.config.pipeline_retention_ms,
                beat,
                *pairs,
            ],
        )


def _finish_args(outcome: Outcome) -> tuple[str, str, str | int]:
    match outcome:
        case Succeeded(output_json):
            return "succeeded", output_json, ""
        case Failed(error):
            return "failed", error.model_dump_json(), ""
        case Retry(error, delay):
            return "retry", error.model_dump_json(), max(0, round(delay * 1000))
        case Requeue(reason):
            return "requeue", json.dumps(reason)[1:-1], ""
        case Abandoned():
            return "", "", ""
    raise TypeError(f"not an outcome: {outcome!r}")
