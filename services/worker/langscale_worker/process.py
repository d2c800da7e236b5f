"""The worker process: claims runs, runs many at once, holds their leases, drains on SIGTERM.

One asyncio loop does everything:

- **pickup**: it waits on a pub/sub wake-up (a run of one of its pipelines became due) or
  a freed slot, with ``LANGSCALE_POLL_INTERVAL`` only as a fallback, and claims up to its
  free slots in one call per partition (:meth:`Leases.claim`, which also starts them);
- **attempts**: each claimed run is a task running :func:`execute.execute`, which returns
  a typed outcome; the task hands it to the outbox;
- **outbox**: attempts' writes (chunks, outcomes) pending when a call returns go together
  in the next one, one call per partition (group commit), retried with backoff through a
  Redis outage;
- **leases**: every third of the lease it renews all of them in one call per partition and
  sweeps lapsed ones; runs it no longer holds (taken over while it was frozen) are stopped;
- **cancels**: a client's cancel arrives by pub/sub and stops that run's task.

On SIGTERM it takes nothing new, lets running attempts finish for ``LANGSCALE_DRAIN_TIMEOUT``,
then stops the rest, which go back to the front of their queues at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langscale import metrics
from langscale.contract import EventType, RunState
from langscale.keys import partition_of
from langscale.lifecycle import (
    Abandoned,
    Applied,
    Claim,
    Failed,
    Leases,
    LifecycleConfig,
    Outcome,
    Requeue,
    StaleAttempt,
    Succeeded,
)
from langscale.redis import UNAVAILABLE, check_redis_kind, create_redis, with_retries
from langscale.settings import Settings
from langscale_worker import http, outgoing
from langscale_worker.execute import Runtime, execute
from langscale_worker.registry import Pipeline

logger = logging.getLogger(__name__)

CancelReason = Literal["cancelled", "stale", "stopping"]


@dataclass
class _Pending:
    """Writes waiting for the next call, each with the future its writer awaits."""

    # (run id, fence, events, number of the first within the attempt, future)
    appends: list[tuple[str, str, list[tuple[EventType, str]], int, asyncio.Future[int]]] = field(
        default_factory=list
    )
    # (run id, fence, slot, answer, due: loop time it goes at the latest); nobody waits
    answers: list[tuple[str, str, str, str, float]] = field(default_factory=list)
    finishes: list[tuple[Claim, Outcome, asyncio.Future[Applied]]] = field(default_factory=list)


# The longest an LLM answer waits for other writes to go with (Outbox.remember).
ANSWER_DELAY = 0.5


class Outbox:
    """Attempts' writes, batched: whatever is pending when a call returns goes in the next
    call, one per partition. An attempt waits for its own write, so its writes stay in
    order; a write Redis refuses as stale raises :class:`StaleAttempt` in the attempt."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.stop = asyncio.Event()  # set when the process ends: stop retrying
        self._pending = _Pending()
        self._ready = asyncio.Event()
        self._numbered: dict[tuple[str, str], int] = {}  # events sent per attempt

    async def append(self, run_id: str, fence: str, events: list[tuple[EventType, str]]) -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # Numbered within the attempt, so a write retried after a lost reply is not repeated.
        first = self._numbered.get((run_id, fence), 0)
        self._numbered[(run_id, fence)] = first + len(events)
        self._pending.appends.append((run_id, fence, events, first, future))
        self._ready.set()
        if await future < 0:
            metrics.STALE_WRITES.labels("append").inc()
            raise StaleAttempt(f"run {run_id} is held by another attempt")

    async def remember(self, run_id: str, fence: str, slot: str, answer: str) -> None:
        """An LLM answer for the run's later attempts to replay, written ANSWER_DELAY later
        or with its attempt's outcome if that comes first (before it); the call does not
        wait for it. An attempt that ends for good within the delay deletes its answers
        with its replay hash: they are not written at all (see _flush)."""
        loop = asyncio.get_running_loop()
        self._pending.answers.append((run_id, fence, slot, answer, loop.time() + ANSWER_DELAY))
        loop.call_later(ANSWER_DELAY, self._ready.set)

    async def finish(self, claim: Claim, outcome: Outcome) -> Applied:
        self._numbered.pop((claim.run_id, claim.fence), None)
        future: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._pending.finishes.append((claim, outcome, future))
        self._ready.set()
        applied = await future
        if applied is Applied.STALE:
            metrics.STALE_WRITES.labels("finish").inc()
        return applied

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._pending = self._pending, _Pending()
            try:
                await self._flush(batch)
            except Exception as error:  # a bug, not Redis: fail its writers, keep serving
                logger.exception("outbox write failed")
                futures: list[asyncio.Future[Any]] = [a[-1] for a in batch.appends]
                futures += [f[-1] for f in batch.finishes]
                for future in futures:
                    if not future.done():
                        future.set_exception(error)

    async def _flush(self, batch: _Pending) -> None:
        """One call per partition and kind: LLM answers, then events, then outcomes (an
        attempt's earlier writes always land before its outcome)."""
        # An answer goes when due or with its attempt's outcome, unless that outcome ends
        # the run for good: its replay hash goes at once (issue 16: commands per run).
        with_outcome = {(c.run_id, c.fence): outcome for c, outcome, _ in batch.finishes}
        now = asyncio.get_running_loop().time()
        answers: dict[int, list[tuple[str, str, str, str]]] = defaultdict(list)
        for run_id, fence, slot, answer, due in batch.answers:
            ended_by = with_outcome.get((run_id, fence))
            if isinstance(ended_by, Succeeded | Failed):
                continue
            if ended_by is None and due > now + 0.01 and not self.stop.is_set():
                self._pending.answers.append((run_id, fence, slot, answer, due))  # not yet
                continue
            answers[partition_of(run_id)].append((run_id, fence, slot, answer))
        for partition, kept in answers.items():
            try:
                results = await with_retries(
                    lambda p=partition, a=kept: self.leases.remember(p, a),  # type: ignore[misc]
                    deadline=None,
                    what="remember",
                    stop=self.stop,
                )
            except Exception as error:  # replay is an optimisation: a retry pays again
                logger.warning("LLM answers not kept for replay: %s", error)
                continue
            metrics.STALE_WRITES.labels("remember").inc(results.count(Applied.STALE))
        appends: dict[int, list[Any]] = defaultdict(list)
        for pending_append in batch.appends:
            appends[partition_of(pending_append[0])].append(pending_append)
        for partition, pending in appends.items():
            calls = [(run_id, fence, events, first) for run_id, fence, events, first, _ in pending]
            await self._settle(
                pending,
                lambda p=partition, c=calls: self.leases.append(p, c),  # type: ignore[misc]
                "append",
            )
        finishes: dict[int, list[Any]] = defaultdict(list)
        for pending_finish in batch.finishes:
            finishes[pending_finish[0].partition].append(pending_finish)
        for partition, pending in finishes.items():
            outcomes = [(claim, outcome) for claim, outcome, _ in pending]
            await self._settle(
                pending,
                lambda p=partition, o=outcomes: self.leases.finish(p, o),  # type: ignore[misc]
                "finish",
            )

    async def _settle(
        self, items: list[Any], call: Callable[[], Awaitable[list[Any]]], what: str
    ) -> None:
        try:
            results = await with_retries(call, deadline=None, what=what, stop=self.stop)
        except Exception as error:
            for item in items:
                if not item[-1].done():
                    item[-1].set_exception(error)
            return
        for item, result in zip(items, results, strict=True):
            if not item[-1].done():
                item[-1].set_result(result)


@dataclass
class _Attempt:
    claim: Claim
    task: asyncio.Task[None]
    finishing: bool = False  # its outcome is being written: no more cancelling


class WorkerProcess:
    """One worker process (``langscale worker``)."""

    def __init__(
        self,
        settings: Settings,
        pipelines: dict[str, Pipeline],
        *,
        tracer_provider: Any = None,
    ) -> None:
        self.settings = settings
        self.pipelines = pipelines
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.config = LifecycleConfig.from_settings(settings)
        self.redis = create_redis(settings)
        self.leases = Leases(self.redis, self.config, self.worker_id, sorted(pipelines))
        self.outbox = Outbox(self.leases)
        self.runtime = Runtime(
            settings=settings,
            pipelines=pipelines,
            publish=self.outbox.append,
            link_trace=self._link_trace,
            tracer_provider=tracer_provider,
            save_partial=self._save_partial,
        )
        self.running: dict[str, _Attempt] = {}
        self.failed = False  # a helper died: the process exits non-zero
        self.last_iteration = time.monotonic()  # for the per-process liveness probe
        self._why_cancelled: dict[str, CancelReason] = {}
        self._partial_kept: set[str] = set()  # runs whose stopped attempt called _save_partial
        self._isolation: Literal["isolating", "isolated"] | None = None
        self._next_partition = 0
        self._wake = asyncio.Event()
        # Which partitions to ask (see _claim): every one, at start, after a wake-up that
        # names none and at least once per poll interval; else those a wake-up named.
        self._scan_all = True
        self._last_scan_all = 0.0
        self._hinted: set[int] = set()
        self._partition_of = {
            self.config.keyspace.prefix(partition): partition
            for partition in self.config.partition_ids
        }
        self._stopping = asyncio.Event()
        self._definitions = [
            pipeline.definition().model_copy(update={"pool": settings.worker_pool})
            for pipeline in pipelines.values()
        ]

    # --- the loop -------------------------------------------------------------------------
    def stop(self) -> None:
        """Take nothing new; drain and exit (SIGTERM, SIGINT)."""
        if not self._stopping.is_set():
            logger.info("worker stopping: draining", extra={"runs": len(self.running)})
            self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        outgoing.bind(
            self.redis, self.settings, self.leases, self.outbox.append, self.outbox.remember
        )
        metrics.register_outgoing(lambda: (bound := outgoing.bound()) and bound.stats)
        helpers: list[asyncio.Task[Any]] = []
        if self.settings.worker_http_port:  # up before the worker says it is there
            stale_after = max(10.0, 5 * self.settings.poll_interval)
            app = http.create_app(lambda: self.last_iteration, stale_after)
            helpers.append(
                await http.start(
                    app, self.settings.worker_http_port, self.settings.worker_http_host
                )
            )
        await with_retries(
            lambda: check_redis_kind(self.redis, self.settings.redis_url),
            deadline=None,
            what="check Redis",
        )
        await check_redis_durability(self.redis)
        await with_retries(
            lambda: self.leases.heartbeat(self._definitions), deadline=None, what="register"
        )
        helpers += [
            asyncio.create_task(self.outbox.run(), name="outbox"),
            asyncio.create_task(self._listen(), name="listen"),
            asyncio.create_task(self._keep_leases(), name="leases"),
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
        ]
        for helper in helpers:
            helper.add_done_callback(self._helper_ended)
        logger.info(
            "worker ready",
            extra={
                "worker_id": self.worker_id,
                "pool": self.settings.worker_pool,
                "pipelines": sorted(self.pipelines),
            },
        )
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self._claim()
                except UNAVAILABLE as error:  # Redis restarting or unreachable: try again
                    logger.warning("claim failed: %s", error)
                self.last_iteration = time.monotonic()
                await _first(self._wake, self._stopping, timeout=self.settings.poll_interval)
                if not self._wake.is_set():
                    self._scan_all = True  # runs that became due by time (a retry's delay)
            await self._drain()
        finally:
            self.outbox.stop.set()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.leases.leave()
            await self.redis.aclose()

    def _helper_ended(self, task: asyncio.Task[Any]) -> None:
        """A helper (lease keeper, outbox, listener, heartbeats) must live as long as the
        process: one that died would strand runs silently. Stop, and exit non-zero."""
        if task.cancelled() or self._stopping.is_set():
            return
        logger.critical(
            "worker helper %s died: stopping the worker",
            task.get_name(),
            exc_info=task.exception(),
        )
        self.failed = True
        self.stop()

    async def _claim(self) -> None:
        if self._isolation == "isolated":
            return  # a suspect runs alone: nothing else until it ends
        idle = not self.running
        free = self.settings.worker_concurrency - len(self.running)
        was = self._isolation
        isolating = False
        # Every partition, or only those a wake-up named since (on a cluster most are
        # empty at any moment); all of them at least once per poll interval, for runs
        # that became due by time and wake-ups this process missed.
        now = time.monotonic()
        scan_all = (
            self._scan_all
            or was == "isolating"
            or now - self._last_scan_all >= self.settings.poll_interval
        )
        pending = [p for p in self._partitions() if scan_all or p in self._hinted]
        self._scan_all = False
        self._hinted.difference_update(pending)
        if scan_all:
            self._last_scan_all = now
        try:
            while pending:
                slots = 0 if was == "isolating" else free
                if slots <= 0 and not idle and was != "isolating":
                    break
                partition = pending[0]
                result = await self.leases.claim(partition, slots, idle)
                pending.pop(0)
                if result.mode == "isolated":
                    self._isolation = "isolated"
                    self._start(result.claims[0])
                    return
                if result.mode == "isolating":
                    isolating = True
                    break
                for claim in result.claims:
                    self._start(claim)
                if slots > 0 and len(result.claims) >= slots:
                    self._hinted.add(partition)  # it may have more: ask again when free
                free -= len(result.claims)
                idle = idle and not result.claims
        finally:
            # Partitions not asked (no free slot, isolation, Redis unavailable): ask again.
            if pending:
                if scan_all:
                    self._scan_all = True
                else:
                    self._hinted.update(pending)
        self._isolation = "isolating" if isolating else None
        if was == "isolating" and self._isolation is None:
            self._scan_all = True
            self._wake.set()  # no suspects left: claim normally at once

    def _partitions(self) -> list[int]:
        ids = self.config.partition_ids
        start, self._next_partition = self._next_partition, (self._next_partition + 1) % len(ids)
        return [ids[(start + i) % len(ids)] for i in range(len(ids))]

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._attempt(claim), name=f"run {claim.run_id}")
        self.running[claim.run_id] = _Attempt(claim, task)
        task.add_done_callback(lambda done: self._done(claim, done))

    def _done(self, claim: Claim, task: asyncio.Task[None]) -> None:
        """Free the slot and look for more work at once if the last claim may have left
        some (O(1) per run, whatever C): an empty queue is not scanned again per run."""
        self.running.pop(claim.run_id, None)
        self._why_cancelled.pop(claim.run_id, None)
        self._partial_kept.discard(claim.run_id)
        if claim.isolated:
            self._isolation = None
            self._scan_all = True  # other suspects may wait, in any partition
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "attempt of %s crashed in the worker itself",
                claim.run_id,
                exc_info=task.exception(),
            )
        # Due runs may be left (a partition to ask): a freed slot claims at once; else the
        # next claim waits for a wake-up (a run became due) or the poll interval.
        if self._scan_all or self._hinted or self._isolation == "isolating":
            self._wake.set()

    async def _attempt(self, claim: Claim) -> None:
        try:
            outcome = await execute(claim, self.runtime)
        except asyncio.CancelledError:
            reason = self._why_cancelled.get(claim.run_id, "stopping")
            thread = _thread_of(claim)
            if reason == "cancelled" and thread and claim.run_id not in self._partial_kept:
                # stopped before its pipeline ran: nothing to keep, but an interrupt's next
                # run waits for this attempt's word (or its lease)
                await self._save_partial(claim, thread, None)
            outcome = Requeue("worker_stopping") if reason == "stopping" else Abandoned(reason)
        attempt = self.running.get(claim.run_id)
        if attempt is not None:
            attempt.finishing = True
        applied = await self.outbox.finish(claim, outcome)
        count_end(claim, outcome, applied)

    def _cancel(self, run_id: str, reason: CancelReason) -> None:
        attempt = self.running.get(run_id)
        if attempt is not None and not attempt.finishing:
            self._why_cancelled[run_id] = reason
            attempt.task.cancel()

    async def _drain(self) -> None:
        tasks = [attempt.task for attempt in self.running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.drain_timeout)
        for run_id in list(self.running):
            self._cancel(run_id, "stopping")
        tasks = [attempt.task for attempt in self.running.values()]
        if tasks:  # their outcomes (back to the queue) are being written
            await asyncio.wait(tasks, timeout=10)

    async def _link_trace(self, claim: Claim, span_context: str) -> str | None:
        try:
            return await self.leases.link_trace(claim, span_context)
        except UNAVAILABLE as error:  # tracing never fails a run
            logger.debug("could not record the attempt's span: %s", error)
            return None

    async def _save_partial(self, claim: Claim, thread_id: str, message: str | None) -> None:
        """An attempt of a thread's run was stopped: if an interrupt stopped it, its partial
        answer goes to the history and the thread's next run may start (it waits for this,
        at most until the attempt's lease would have lapsed)."""
        self._partial_kept.add(claim.run_id)
        try:
            written = await with_retries(
                lambda: self.leases.append_partial(
                    claim.run_id, claim.fence, claim.job.tenant, thread_id, message
                ),
                deadline=asyncio.get_running_loop().time() + self.config.lease_ms / 1000,
                what="partial answer",
            )
        except Exception as error:
            logger.warning("could not keep the interrupted run's partial answer: %s", error)
            return
        if written == -3:
            metrics.STALE_WRITES.labels("history_partial").inc()
            logger.warning(
                "partial answer of an interrupted run came too late: the thread's next run "
                "was due; not kept",
                extra={"run_id": claim.run_id},
            )

    # --- helpers --------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        """Renew every lease this worker holds, every third of the lease, and sweep."""
        while True:
            await asyncio.sleep(self.config.lease_ms / 3000)
            held: dict[int, list[Claim]] = defaultdict(list)
            for attempt in self.running.values():
                held[attempt.claim.partition].append(attempt.claim)
            for partition in self.config.partition_ids:
                try:
                    swept, lost = await self.leases.renew(partition, held.get(partition, ()))
                except UNAVAILABLE as error:
                    logger.warning("lease renewal failed: %s", error)
                    continue
                except Exception:  # a bug in one partition's renewal: keep the others
                    logger.exception("lease renewal of partition %d failed", partition)
                    continue
                if swept:
                    metrics.LEASES_LAPSED.inc(swept)
                    logger.warning(
                        "runs of a dead worker went back to the queue", extra={"runs": swept}
                    )
                for run_id in lost:
                    metrics.STALE_WRITES.labels("renew").inc()
                    logger.warning(
                        "run taken over by another attempt: stopping it here",
                        extra={"run_id": run_id},
                    )
                    self._cancel(run_id, "stale")

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pipeline_heartbeat)
            try:
                await self.leases.heartbeat(self._definitions)
            except UNAVAILABLE as error:  # keep serving; the next beat retries
                logger.warning("heartbeat failed: %s", error)

    async def _listen(self) -> None:
        """Wake-ups for this worker's pipelines and cancels; reconnect if Redis drops us."""
        keyspace = self.config.keyspace
        channels = {keyspace.wake_channel(name) for name in self.pipelines}
        cancel = keyspace.cancel_channel
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels, cancel)
                    self._scan_all = True  # anything published while we were away
                    self._wake.set()
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        if message["channel"].decode() == cancel:
                            self._cancel(message["data"].decode(), "cancelled")
                            continue
                        # A wake-up names its partition (its key prefix); one that names
                        # none (an older gateway's) has every partition asked.
                        partition = self._partition_of.get(message["data"].decode())
                        if partition is None:
                            self._scan_all = True
                        else:
                            self._hinted.add(partition)
                        self._wake.set()
            except UNAVAILABLE as error:
                logger.warning("pub/sub subscription lost (%s); polling until it is back", error)
                await asyncio.sleep(self.settings.poll_interval)


def _thread_of(claim: Claim) -> str | None:
    """The run's thread (its ``config.configurable.session_id``), if it has one."""
    configurable = claim.job.config.get("configurable")
    thread = configurable.get("session_id") if isinstance(configurable, dict) else None
    return thread if isinstance(thread, str) else None


def count_end(claim: Claim, outcome: Outcome, applied: Applied) -> None:
    """Metrics of a run's end, counted once: by the attempt whose write ended it."""
    if isinstance(outcome, Abandoned):
        if outcome.reason == "cancelled":
            metrics.RUNS.labels(claim.pipeline, RunState.CANCELLED.value).inc()
        return
    if applied is not Applied.APPLIED:
        return
    if isinstance(outcome, Succeeded):
        metrics.RUNS.labels(claim.pipeline, RunState.SUCCEEDED.value).inc()
    elif isinstance(outcome, Failed):
        metrics.RUNS.labels(claim.pipeline, RunState.FAILED.value).inc()
        metrics.RUN_ERRORS.labels(claim.pipeline, outcome.error.type).inc()
    elif isinstance(outcome, Requeue):
        metrics.RUN_RETRIES.labels(claim.pipeline, "worker_stopping").inc()


async def _first(*events: asyncio.Event, timeout: float) -> None:
    """Wait until one of ``events`` is set, or ``timeout`` passes."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


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
