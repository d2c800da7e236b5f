"""Threads in the lifecycle's scripts, against a real Redis: a thread's runs never run at
the same time, the multitask strategies, and the fenced chat history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lifecycle_helpers import claim_all, eventually, lifecycle_config
from redis.asyncio import Redis

from langscale.contract import ErrorInfo, JobSpec, PipelineDefinition, RunState
from langscale.lifecycle import (
    Applied,
    Claim,
    Failed,
    Leases,
    LifecycleConfig,
    ListQuery,
    Requeue,
    Retry,
    RunStore,
    StaleAttempt,
    Submitted,
    Succeeded,
)
from langscale.localredis import LocalRedis

LEASE = 0.3


@pytest.fixture
def config(redis_server: LocalRedis) -> LifecycleConfig:
    return lifecycle_config(
        redis_server.url, lease_seconds=LEASE, result_ttl=60, history_max_messages=6
    )


@pytest.fixture
def store(redis: Redis, config: LifecycleConfig) -> RunStore:
    return RunStore(redis, config)


@pytest.fixture
def leases(redis: Redis, config: LifecycleConfig) -> Leases:
    return Leases(redis, config, "w1", ["chat", "other"])


async def into_thread(
    store: RunStore,
    thread: str,
    strategy: str = "enqueue",
    pipeline: str = "chat",
    tenant: str = "t",
    count: int = 1,
    fields: dict[str, str] | None = None,
) -> Submitted:
    run_ids = store.new_run_ids(count, store.partition_for(tenant, None, thread))
    specs = [JobSpec(run_id=r, pipeline=pipeline, input={"q": r}) for r in run_ids]
    return await store.submit_to_thread(
        specs,
        thread,
        strategy,  # type: ignore[arg-type]
        tenant=tenant,
        fields=fields,
    )


async def queued(store: RunStore, thread: str, **options: Any) -> str:
    submitted = await into_thread(store, thread, **options)
    assert submitted.outcome == "queued", submitted
    return submitted.run_ids[0]


async def claim(leases: Leases, store: RunStore) -> list[Claim]:
    return await claim_all(leases, partition=0)


async def state(store: RunStore, run_id: str) -> RunState:
    record = await store.get(run_id)
    assert record is not None
    return record.state


async def test_a_threads_runs_start_one_at_a_time_in_order(store: RunStore, leases: Leases) -> None:
    first, second, third = [await queued(store, "th-1") for _ in range(3)]
    (c1,) = await claim(leases, store)
    assert c1.run_id == first
    assert await claim(leases, store) == []  # the others wait while the first runs
    await leases.finish(0, [(c1, Succeeded('"a"'))])
    (c2,) = await claim(leases, store)
    assert c2.run_id == second
    await leases.finish(0, [(c2, Failed(ErrorInfo(type="E", message="m")))])
    (c3,) = await claim(leases, store)
    assert c3.run_id == third
    thread = await store.thread("t", "th-1")
    assert thread is not None
    assert thread.pending == [third] and thread.recent == [first, second, third]


async def test_other_threads_and_unthreaded_runs_are_not_held_back(
    store: RunStore, leases: Leases
) -> None:
    a = await queued(store, "th-a")
    await queued(store, "th-a")
    b = await queued(store, "th-b")
    c = await queued(store, "th-c", pipeline="other")
    assert {cl.run_id for cl in await claim(leases, store)} == {a, b, c}


async def test_reject_refuses_a_busy_thread_and_names_its_running_run(
    store: RunStore, leases: Leases
) -> None:
    first = await queued(store, "th", strategy="reject")
    busy = await into_thread(store, "th", strategy="reject")
    assert (busy.outcome, busy.run_ids, busy.state) == ("busy", [first], RunState.QUEUED)
    (c1,) = await claim(leases, store)
    await leases.finish(0, [(c1, Succeeded("1"))])
    assert (await into_thread(store, "th", strategy="reject")).outcome == "queued"


async def test_interrupt_cancels_the_running_run_through_the_fence_and_keeps_its_history(
    redis: Redis, store: RunStore, leases: Leases, config: LifecycleConfig
) -> None:
    first = await queued(store, "th")
    waiting = await queued(store, "th")
    (c1,) = await claim(leases, store)
    await leases.append_history(first, c1.fence, "t", "th", ['{"type":"human","q":1}'])
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(config.keyspace.cancel_channel)
        await pubsub.get_message(timeout=1)
        submitted = await into_thread(store, "th", strategy="interrupt")
        message = await eventually(lambda: pubsub.get_message(timeout=0.2))
    assert message["data"].decode() == first  # its worker is told to stop it
    assert set(submitted.cancelled) == {first, waiting}
    record = await store.get(first)
    assert record is not None and record.state is RunState.CANCELLED
    assert record.error is not None and record.error.type == "interrupted"
    # The interrupted attempt writes nothing more: neither history nor its outcome.
    with pytest.raises(StaleAttempt):
        await leases.append_history(first, c1.fence, "t", "th", ['{"late":1}'])
    assert await leases.finish(0, [(c1, Succeeded("1"))]) == [Applied.STALE]
    assert [e.run_id for e in await store.history("t", "th")] == [first]
    # ...but its partial answer (none here), which lets the next run start.
    assert await leases.append_partial(first, c1.fence, "t", "th", None) == 1
    (c2,) = await claim(leases, store)
    assert c2.run_id == submitted.run_ids[0]


async def test_rollback_drops_what_the_cancelled_run_wrote_and_says_when_nothing_was_rolled_back(
    store: RunStore, leases: Leases
) -> None:
    first = await queued(store, "th")
    (c1,) = await claim(leases, store)
    await leases.append_history(first, c1.fence, "t", "th", ["1", "2"])
    await leases.finish(0, [(c1, Succeeded("1"))])
    second = await queued(store, "th")
    (c2,) = await claim(leases, store)
    await leases.append_history(second, c2.fence, "t", "th", ["3"])
    rolled = await into_thread(store, "th", strategy="rollback")
    assert rolled.cancelled == (second,)
    assert await state(store, second) is RunState.CANCELLED
    assert [e.message for e in await store.history("t", "th")] == ["1", "2"]
    (c3,) = await claim(leases, store)
    await leases.finish(0, [(c3, Succeeded("1"))])
    # The thread's last run already ended: nothing to roll back, the new run proceeds.
    idle = await into_thread(store, "th", strategy="rollback")
    assert (idle.outcome, idle.cancelled) == ("queued", ())
    assert [e.message for e in await store.history("t", "th")] == ["1", "2"]


async def test_a_retried_or_requeued_run_stays_its_threads_head(
    store: RunStore, leases: Leases
) -> None:
    first = await queued(store, "th")
    await queued(store, "th")
    (c1,) = await claim(leases, store)
    await leases.finish(0, [(c1, Retry(ErrorInfo(type="E", message="m"), 0.0))])
    (again,) = await claim(leases, store)
    assert again.run_id == first and again.attempt == 2
    await leases.finish(0, [(again, Requeue("worker_stopping"))])
    (third,) = await claim(leases, store)
    assert third.run_id == first and third.attempt == 3


async def test_a_suspect_stays_its_threads_head(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    dead = Leases(redis, config, "dead", ["chat"])
    sweeper = Leases(redis, config, "alive", ["chat"])
    first = await queued(store, "th")
    await queued(store, "th")
    assert len(await claim(dead, store)) == 1

    async def swept() -> int:
        await asyncio.sleep(LEASE / 4)
        return (await sweeper.renew(0, []))[0]

    assert await eventually(swept) == 1
    assert await claim(sweeper, store) == []  # the thread's next run still waits
    result = await sweeper.claim(0, 10, idle=True)
    assert result.mode == "isolated" and result.claims[0].run_id == first


async def test_cancelling_a_waiting_run_skips_it_and_cancelling_the_head_starts_the_next(
    store: RunStore, leases: Leases
) -> None:
    first = await queued(store, "th")
    second = await queued(store, "th")
    third = await queued(store, "th")
    assert await store.cancel(second, "no") is RunState.QUEUED
    assert await store.cancel(first, "no") is RunState.QUEUED
    (c,) = await claim(leases, store)
    assert c.run_id == third


async def test_a_failed_run_requeued_by_an_operator_rejoins_its_thread_at_the_end(
    store: RunStore, leases: Leases
) -> None:
    first = await queued(store, "th")
    (c1,) = await claim(leases, store)
    await leases.finish(0, [(c1, Failed(ErrorInfo(type="E", message="m")))])
    second = await queued(store, "th")
    assert await store.requeue_failed(first) == 1
    (c2,) = await claim(leases, store)
    assert c2.run_id == second and await claim(leases, store) == []
    await leases.finish(0, [(c2, Succeeded("1"))])
    (c3,) = await claim(leases, store)
    assert c3.run_id == first


async def test_history_replaces_earlier_attempts_refuses_other_threads_and_keeps_the_latest(
    store: RunStore, leases: Leases
) -> None:
    first = await queued(store, "th")
    await queued(store, "other-thread")
    claims = await claim(leases, store)
    c1 = next(c for c in claims if c.run_id == first)
    await leases.append_history(first, c1.fence, "t", "th", ["a1"])
    await leases.finish(0, [(c1, Retry(ErrorInfo(type="E", message="m"), 0.0))])
    (c2,) = await claim(leases, store)
    await leases.append_history(first, c2.fence, "t", "th", ["b1"])
    await leases.append_history(first, c2.fence, "t", "th", ["b2"])
    assert [(e.attempt, e.message) for e in await store.history("t", "th")] == [
        (2, "b1"),
        (2, "b2"),
    ]
    with pytest.raises(ValueError):
        await leases.append_history(first, c2.fence, "t", "other-thread", ["x"])
    length = await leases.append_history(first, c2.fence, "t", "th", [str(i) for i in range(9)])
    assert length == 6  # history_max_messages
    assert [e.message for e in await store.history("t", "th")] == [str(i) for i in range(3, 9)]


async def test_threads_of_two_tenants_with_one_id_are_two_threads(
    store: RunStore, leases: Leases
) -> None:
    await queued(store, "same", tenant="a")
    await queued(store, "same", tenant="b")
    assert len(await claim(leases, store)) == 2
    assert await store.thread("c", "same") is None


async def test_enqueue_beyond_the_threads_limit_is_refused(
    redis: Redis, redis_server: LocalRedis
) -> None:
    store = RunStore(redis, lifecycle_config(redis_server.url, thread_max_pending=2))
    for _ in range(2):
        await queued(store, "th")
    full = await into_thread(store, "th")
    assert (full.outcome, full.due) == ("thread_full", 2)


async def test_a_threads_runs_are_listed_and_a_cancelled_ones_webhook_is_due(
    store: RunStore, leases: Leases
) -> None:
    hook = {"webhook": "https://example.com/h"}
    first = await queued(store, "th", fields=hook)
    second = await queued(store, "th", strategy="rollback", fields=hook)
    page = await store.list_runs(ListQuery(tenant="t", pipeline="chat"))
    assert {r.run_id for r in page.records} == {first, second}
    _, (due,) = await store.claim_webhooks(0, 1000, 10)
    assert due.run_id == first and due.record is not None
    assert due.record.state is RunState.CANCELLED, "the rolled-back run's end is delivered"


async def test_a_forgotten_pipelines_thread_fails_whole_waiting_runs_included(
    redis: Redis, redis_server: LocalRedis
) -> None:
    config = lifecycle_config(
        redis_server.url,
        lease_seconds=LEASE,
        result_ttl=60,
        pipeline_heartbeat=0.1,
        pipeline_retention=0.3,
    )
    store = RunStore(redis, config)
    old = Leases(redis, config, "old", ["legacy"])
    await old.heartbeat([PipelineDefinition(name="legacy", input_schema={}, output_schema={})])
    run_ids = [await queued(store, "th", pipeline="legacy") for _ in range(3)]
    (running,) = await claim(old, store)
    assert running.run_id == run_ids[0]
    await old.leave()  # its lease lapses; nobody serves the pipeline any more
    await asyncio.sleep(0.5)
    await store.catalog()  # forgets it
    assert await store.fail_forgotten() == 3
    for run_id in run_ids:
        record = await store.get(run_id)
        assert record is not None and record.error is not None
        assert (record.state, record.error.type) == (RunState.FAILED, "pipeline_unavailable")
    thread = await store.thread("t", "th")
    assert thread is not None and thread.pending == []
