"""Threads, continued (issue 15), against a real Redis with real LangChain models:

- an interrupted run's partial answer: the attempt an ``interrupt`` stops adds what its
  model had answered so far to its thread's history, once, fenced, and before the thread's
  next run starts — or, if its worker never writes it, not at all, and the next run starts
  when the attempt's lease would have lapsed;
- forgetting a thread's run removes its turns from the history;
- a tenant's threads are listed page by page, and a thread without unfinished runs can be
  deleted."""

from __future__ import annotations

import asyncio

import pytest
from lifecycle_helpers import claim_all, eventually, lifecycle_config
from redis.asyncio import Redis

from langscale.contract import JobSpec, RunState
from langscale.lifecycle import Claim, Leases, LifecycleConfig, RunStore, Submitted, Succeeded
from langscale.lifecycle.threads import ThreadKeys
from langscale.localredis import LocalRedis
from langscale_worker.history import (
    PartialAnswer,
    StreamingPartialAnswer,
    partial_message,
)
from langscale_worker.providers.fake import FakeChatModel

LEASE = 0.5


@pytest.fixture
def config(redis_server: LocalRedis) -> LifecycleConfig:
    return lifecycle_config(redis_server.url, lease_seconds=LEASE, result_ttl=60)


@pytest.fixture
def store(redis: Redis, config: LifecycleConfig) -> RunStore:
    return RunStore(redis, config)


@pytest.fixture
def leases(redis: Redis, config: LifecycleConfig) -> Leases:
    return Leases(redis, config, "w1", ["chat"])


async def into_thread(store: RunStore, thread: str, strategy: str = "enqueue") -> Submitted:
    (run_id,) = store.new_run_ids(1, store.partition_for("t", None, thread))
    spec = JobSpec(run_id=run_id, pipeline="chat", input={"q": run_id})
    submitted = await store.submit_to_thread([spec], thread, strategy, tenant="t")  # type: ignore[arg-type]
    assert submitted.outcome == "queued", submitted
    return submitted


async def running(store: RunStore, leases: Leases, thread: str) -> Claim:
    """A run of ``thread`` that has started and written its question."""
    run_id = (await into_thread(store, thread)).run_ids[0]
    (claim,) = await claim_all(leases)
    assert claim.run_id == run_id
    await leases.append_history(run_id, claim.fence, "t", thread, ["question"])
    return claim


async def test_the_partial_answer_lands_once_before_the_next_run_starts(
    store: RunStore, leases: Leases
) -> None:
    first = await running(store, leases, "th")
    interrupting = await into_thread(store, "th", strategy="interrupt")
    assert interrupting.cancelled == (first.run_id,)
    assert await claim_all(leases) == []  # the next run waits for the partial answer
    assert await leases.append_partial(first.run_id, first.fence, "t", "th", "partial") == 2
    (second,) = await claim_all(leases)  # ... and starts once it landed
    assert second.run_id == interrupting.run_ids[0]
    await leases.append_history(second.run_id, second.fence, "t", "th", ["next"])
    # Once only: the token the interrupt left is for that one write.
    assert await leases.append_partial(first.run_id, first.fence, "t", "th", "again") == -1
    history = [(e.run_id, e.message) for e in await store.history("t", "th")]
    assert history == [
        (first.run_id, "question"),
        (first.run_id, "partial"),
        (second.run_id, "next"),
    ]


async def test_without_its_partial_answer_the_next_run_starts_when_the_lease_would_lapse(
    store: RunStore, leases: Leases
) -> None:
    first = await running(store, leases, "th")
    interrupting = await into_thread(store, "th", strategy="interrupt")
    (second,) = await eventually(lambda: claim_all(leases), timeout=5 * LEASE)
    assert second.run_id == interrupting.run_ids[0]
    # Too late: it would come after the next run's turn; refused, not reordered.
    assert await leases.append_partial(first.run_id, first.fence, "t", "th", "late") == -3
    assert [e.message for e in await store.history("t", "th")] == ["question"]


async def test_a_rollback_a_cancel_or_another_token_write_no_partial_answer(
    store: RunStore, leases: Leases
) -> None:
    first = await running(store, leases, "rb")
    rolling = await into_thread(store, "rb", strategy="rollback")
    assert await leases.append_partial(first.run_id, first.fence, "t", "rb", "x") == -1
    assert await store.history("t", "rb") == []  # a rollback drops everything
    (second,) = await claim_all(leases)  # nothing to wait for
    assert second.run_id == rolling.run_ids[0]
    await store.cancel(second.run_id, "test")
    assert await leases.append_partial(second.run_id, second.fence, "t", "rb", "x") == -1
    third = await running(store, leases, "other")
    await into_thread(store, "other", strategy="interrupt")
    assert await leases.append_partial(third.run_id, "1", "t", "other", "x") == -1


async def test_an_invoked_model_streams_so_an_attempt_has_a_partial_answer() -> None:
    model = FakeChatModel(tokens_per_second=50)
    answer = "You said: " + " ".join(f"w{i}" for i in range(100))
    partial = StreamingPartialAnswer()
    call = asyncio.create_task(
        model.ainvoke(answer.removeprefix("You said: "), config={"callbacks": [partial]})
    )
    await eventually(lambda: asyncio.sleep(0, partial.text()), timeout=5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    text = partial.text()
    assert text and answer.startswith(text) and text != answer
    message = partial_message(text)
    assert message is not None and '"interrupted": true' in message
    assert partial_message("") is None


async def test_a_finished_model_call_is_the_partial_answer_whole() -> None:
    partial = PartialAnswer()
    await FakeChatModel().ainvoke("hello", config={"callbacks": [partial]})
    assert partial.text() == "You said: hello"


async def test_forgetting_an_ended_threads_run_removes_its_turns(
    store: RunStore, leases: Leases
) -> None:
    first = await running(store, leases, "fg")
    await leases.finish(first.partition, [(first, Succeeded('"a"'))])
    second = await running(store, leases, "fg")
    await leases.append_history(second.run_id, second.fence, "t", "fg", ["answer"])
    await leases.finish(second.partition, [(second, Succeeded('"b"'))])
    record = await store.get(first.run_id)
    assert record is not None
    assert await store.forget(record) is RunState.SUCCEEDED
    assert [e.run_id for e in await store.history("t", "fg")] == [second.run_id] * 2
    thread = await store.thread("t", "fg")
    assert thread is not None and thread.recent == [second.run_id]


async def test_a_tenants_threads_are_listed_newest_first_page_by_page(
    redis: Redis, store: RunStore, leases: Leases, config: LifecycleConfig
) -> None:
    names = [f"list-{n}" for n in range(7)]
    for name in names:
        await into_thread(store, name)
    await store.submit_to_thread(  # another tenant's thread is not listed
        [
            JobSpec(
                run_id=store.new_run_ids(1, store.partition_for("u", None, "x"))[0],
                pipeline="chat",
                input={},
            )
        ],
        "x",
        "enqueue",
        tenant="u",
    )
    gone = ThreadKeys.of(config, "t", "list-3")
    await redis.delete(gone.thread)  # expired: a hole, skipped and removed
    seen, cursor = [], None
    for _ in range(10):
        page = await store.list_threads("t", 2, cursor)
        assert len(page.threads) <= 2
        seen += page.threads
        cursor = page.cursor
        if cursor is None:
            break
    assert sorted(t.thread_id for t in seen) == sorted(n for n in names if n != "list-3")
    positions = [(t.created_ms, t.thread_id) for t in seen]
    assert positions == sorted(positions, reverse=True)
    assert all((t.pending, t.runs, t.messages) == (1, 1, 0) for t in seen)
    assert await redis.zscore(config.keyspace.threads_index(gone.partition, "t"), "list-3") is None


async def test_a_thread_is_deleted_once_its_runs_have_ended(
    store: RunStore, leases: Leases
) -> None:
    run = await running(store, leases, "del")
    assert await store.delete_thread("t", "del") == ("busy", run.run_id)
    await leases.finish(run.partition, [(run, Succeeded('"a"'))])
    assert await store.delete_thread("t", "del") == ("deleted", None)
    assert await store.thread("t", "del") is None
    assert await store.history("t", "del") == []
    assert all(t.thread_id != "del" for t in (await store.list_threads("t", 100)).threads)
    assert await store.delete_thread("t", "del") == ("none", None)
    assert await store.get(run.run_id) is not None  # its runs stay until their TTL
