"""Threads at the gateway: which thread a request names, and what a thread shows.

A run names its thread with ``thread_id`` (``POST /v1/runs``) or, as LangServe clients of a
``RunnableWithMessageHistory`` do, with ``config.configurable.session_id``; the two must
agree, and a run with a ``thread_id`` gets it as its ``session_id`` too. What a new run does
to a busy thread is its ``multitask_strategy`` (``enqueue`` by default). The ordering itself
is the lifecycle's (:mod:`langscale.lifecycle.threads`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from langscale.contract import RunRecord
from langscale.lifecycle import (
    MULTITASK_STRATEGIES,
    MultitaskStrategy,
    RunStore,
    ThreadSummary,
    is_valid_thread_id,
)
from langscale_gateway.auth import Principal
from langscale_gateway.errors import ApiError


@dataclass(frozen=True)
class ThreadRequest:
    thread_id: str
    strategy: MultitaskStrategy


def check_strategy(strategy: str | None) -> MultitaskStrategy | None:
    if strategy is not None and strategy not in MULTITASK_STRATEGIES:
        raise ApiError(
            422,
            "invalid_multitask_strategy",
            f"multitask_strategy {strategy!r} is not one of {', '.join(MULTITASK_STRATEGIES)}",
            allowed=list(MULTITASK_STRATEGIES),
        )
    return cast(MultitaskStrategy | None, strategy)


def check_thread_id(thread_id: Any, where: str) -> str:
    if not isinstance(thread_id, str) or not is_valid_thread_id(thread_id):
        raise ApiError(
            422,
            "invalid_thread_id",
            f"{where}: a thread id is 1 to 128 letters, digits and _.:- (starting with a "
            "letter or digit), e.g. a UUID",
            path=where,
        )
    return thread_id


def resolve_thread(
    thread_id: str | None, strategy: str | None, configs: Sequence[dict[str, Any]]
) -> tuple[ThreadRequest | None, list[dict[str, Any]]]:
    """The thread a request's runs go to (None: no thread), and their configs with the
    thread as ``configurable.session_id``. 422 for an invalid id or strategy, ids that
    disagree, or a strategy without a thread."""
    checked = check_strategy(strategy)
    named: set[str] = set()
    if thread_id is not None:
        named.add(check_thread_id(thread_id, "$.thread_id"))
    for config in configs:
        configurable = config.get("configurable")
        if isinstance(configurable, dict) and "session_id" in configurable:
            path = "$.config.configurable.session_id"
            named.add(check_thread_id(configurable["session_id"], path))
    if len(named) > 1:
        raise ApiError(
            422,
            "thread_id_mismatch",
            "the runs of one request belong to one thread: thread_id and "
            "config.configurable.session_id name different threads",
            thread_ids=sorted(named),
        )
    if not named:
        if checked is not None:
            raise ApiError(422, "invalid_request", "multitask_strategy needs a thread (thread_id)")
        return None, list(configs)
    (thread,) = named
    configs = [
        {**config, "configurable": {**(config.get("configurable") or {}), "session_id": thread}}
        for config in configs
    ]
    return ThreadRequest(thread, checked or "enqueue"), configs


async def thread_view(runs: RunStore, caller: Principal, thread_id: str) -> dict[str, Any]:
    """``GET /v1/threads/{id}``: the thread's state, its runs not ended (the head first:
    running or next) and its latest runs. Another tenant's thread is 404, as no thread."""
    check_thread_id(thread_id, "thread_id")
    thread = await runs.thread(caller.tenant, thread_id)
    if thread is None:
        raise ApiError(404, "thread_not_found", f"no thread {thread_id} (unknown or expired)")
    records = await runs.get_many(thread.recent)
    return {
        "thread_id": thread_id,
        "state": "busy" if thread.pending else "idle",
        "pending_run_ids": thread.pending,
        "runs": [_run_summary(r) for r in records if r is not None],
        "run_count": thread.runs,
        "messages": thread.messages,
        "created_at": thread.created_ms / 1000,
        "updated_at": thread.updated_ms / 1000,
    }


async def history_view(runs: RunStore, caller: Principal, thread_id: str) -> dict[str, Any]:
    """``GET /v1/threads/{id}/history``: its chat messages, oldest first, each with the run
    (and attempt) that wrote it."""
    check_thread_id(thread_id, "thread_id")
    if await runs.thread(caller.tenant, thread_id) is None:
        raise ApiError(404, "thread_not_found", f"no thread {thread_id} (unknown or expired)")
    entries = await runs.history(caller.tenant, thread_id)
    return {
        "thread_id": thread_id,
        "messages": [
            {"run_id": e.run_id, "attempt": e.attempt, "message": json.loads(e.message)}
            for e in entries
        ],
    }


async def threads_view(
    runs: RunStore, caller: Principal, limit: int, cursor: tuple[int, str] | None
) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """``GET /v1/threads``: the caller's tenant's threads, newest created first, a page,
    and the position of its last one when more may follow."""
    page = await runs.list_threads(caller.tenant, limit, cursor)
    return [_thread_summary(t) for t in page.threads], page.cursor


async def delete_thread(runs: RunStore, caller: Principal, thread_id: str) -> None:
    """``DELETE /v1/threads/{id}``: its history, log and state go; 409 while it has a run
    that has not ended (cancel it, or wait)."""
    check_thread_id(thread_id, "thread_id")
    outcome, run_id = await runs.delete_thread(caller.tenant, thread_id)
    if outcome == "none":
        raise ApiError(404, "thread_not_found", f"no thread {thread_id} (unknown or expired)")
    if outcome == "busy":
        raise ApiError(
            409,
            "thread_busy",
            "the thread has a run that has not ended: cancel it or wait for it to end",
            run_id=run_id,
        )


def _thread_summary(thread: ThreadSummary) -> dict[str, Any]:
    return {
        "thread_id": thread.thread_id,
        "state": "busy" if thread.pending else "idle",
        "pending_runs": thread.pending,
        "run_count": thread.runs,
        "messages": thread.messages,
        "created_at": thread.created_ms / 1000,
        "updated_at": thread.updated_ms / 1000,
    }


def _run_summary(record: RunRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", include={"run_id", "pipeline", "state", "error"}) | {
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }
