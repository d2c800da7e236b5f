"""Threads (conversations): the runs of one thread never execute at the same time.

A thread is a tenant's, named by the client (``thread_id``, or LangServe's
``config.configurable.session_id``). It lives in one partition (:func:`keys.thread_partition`)
with every run it has, so one script sees the thread and its runs:

- the thread's **queue** lists its runs that have not ended, in order; only the head is on
  its pipeline's queue (or running, or a suspect after its worker died, or waiting for a
  retry), the others wait; the script that ends a run (finish, cancel, a sweep that fails
  it) lets the next one start, so ordering costs no polling and other threads are not slowed;
- what a new run does to a busy thread is the client's **multitask strategy**: ``enqueue``
  (wait in order), ``reject`` (409), ``interrupt`` (cancel the thread's runs through the
  cancel path, keeping what they wrote to the history) or ``rollback`` (cancel them and
  drop what they wrote);
- its **history** is a list of chat messages, each written by an attempt of one of its runs
  and fenced like every other write of an attempt; a retried run's earlier writes are
  replaced, so a turn is never repeated. It keeps the latest ``LANGSCALE_HISTORY_MAX_MESSAGES``
  for ``LANGSCALE_THREAD_TTL`` after the thread's last activity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from redis.asyncio import Redis

from langscale.keys import thread_partition
from langscale.lifecycle.config import LifecycleConfig

MultitaskStrategy = Literal["enqueue", "reject", "interrupt", "rollback"]
MULTITASK_STRATEGIES: tuple[str, ...] = get_args(MultitaskStrategy)

# A thread id: what LangServe clients use as a session id (UUIDs, slugs), safe in key names.
THREAD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def is_valid_thread_id(value: str) -> bool:
    return THREAD_ID_PATTERN.fullmatch(value) is not None


def thread_name(tenant: str, thread_id: str) -> str:
    """How a run's hash and the scripts name a thread."""
    return f"{tenant}:{thread_id}"


@dataclass(frozen=True)
class ThreadKeys:
    partition: int
    thread: str
    queue: str
    log: str
    history: str

    @classmethod
    def of(cls, config: LifecycleConfig, tenant: str, thread_id: str) -> ThreadKeys:
        keyspace = config.keyspace
        partition = thread_partition(tenant, thread_id, config.partition_ids)
        return cls(
            partition,
            keyspace.thread(partition, tenant, thread_id),
            keyspace.thread_queue(partition, tenant, thread_id),
            keyspace.thread_log(partition, tenant, thread_id),
            keyspace.history(partition, tenant, thread_id),
        )


@dataclass(frozen=True)
class ThreadRecord:
    """What Redis holds about a thread: ``pending`` its runs not ended (the head first),
    ``recent`` its latest runs (oldest first), ``messages`` its history's length."""

    thread_id: str
    tenant: str
    created_ms: int
    updated_ms: int
    runs: int
    pending: list[str]
    recent: list[str]
    messages: int


@dataclass(frozen=True)
class ThreadSummary:
    """A thread as the threads listing shows it: ``pending`` its runs not ended."""

    thread_id: str
    created_ms: int
    updated_ms: int
    runs: int
    pending: int
    messages: int


@dataclass(frozen=True)
class ThreadPage:
    """A page of a tenant's threads, newest created first; ``cursor`` (created ms, thread
    id) of the last one when more may follow."""

    threads: list[ThreadSummary]
    cursor: tuple[int, str] | None


@dataclass(frozen=True)
class HistoryEntry:
    run_id: str
    attempt: int
    message: str  # JSON of one message, as the writer stored it


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_thread(tenant: str, thread_id: str, reply: Any) -> ThreadRecord | None:
    """A thread from ``thread_read.lua``'s reply (None: no such thread)."""
    raw, pending, recent, messages = reply
    if not raw:
        return None
    fields = {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)}
    return ThreadRecord(
        thread_id=thread_id,
        tenant=tenant,
        created_ms=int(fields.get("created", 0)),
        updated_ms=int(fields.get("updated", 0)),
        runs=int(fields.get("runs", 0)),
        pending=[_text(v) for v in pending],
        recent=[_text(v) for v in recent],
        messages=int(messages),
    )


async def read_history(
    redis: Redis, config: LifecycleConfig, tenant: str, thread_id: str
) -> list[HistoryEntry]:
    """The thread's history, oldest message first."""
    keys = ThreadKeys.of(config, tenant, thread_id)
    entries = []
    for raw in await redis.lrange(keys.history, 0, -1):  # type: ignore[misc]
        run_id, attempt, message = _text(raw).split(" ", 2)
        entries.append(HistoryEntry(run_id, int(attempt), message))
    return entries
