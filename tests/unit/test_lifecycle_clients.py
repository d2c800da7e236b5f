"""The lifecycle's client-facing promises against a real Redis: listing indexes (O(page),
newest first, holes tolerated), forgetting a run, webhook deliveries (queued in the step
that ends a run, leased, at least once), and runs of forgotten pipelines."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lifecycle_helpers import claim_all, lifecycle_config, submit
from redis.asyncio import Redis

from langscale.contract import ErrorInfo, JobSpec, PipelineDefinition, RunState
from langscale.lifecycle import (
    Failed,
    Leases,
    LifecycleConfig,
    ListQuery,
    RunStore,
    Succeeded,
)
from langscale.localredis import LocalRedis


@pytest.fixture
def config(redis_server: LocalRedis) -> LifecycleConfig:
    return lifecycle_config(
        redis_server.url,
        lease_seconds=0.3,
        result_ttl=60,
        redis_partitions=3,
        runs_indexed_metadata="user",
        pipeline_heartbeat=0.1,
        pipeline_retention=0.3,
    )


@pytest.fixture
def store(redis: Redis, config: LifecycleConfig) -> RunStore:
    return RunStore(redis, config)


async def queue_runs(
    store: RunStore, n: int, pipeline: str = "chat", tenant: str = "t1", **metadata: Any
) -> list[str]:
    ids = []
    for i in range(n):
        ids += await submit(
            store,
            pipeline,
            partition=store.config.partition_ids[i % 3],
            tenant=tenant,
            metadata=metadata or None,
        )
        await asyncio.sleep(0.002)  # distinct creation times, as real submits have
    return ids


async def every_page(store: RunStore, **query: Any) -> list[str]:
    seen, cursor = [], None
    while True:
        page = await store.list_runs(ListQuery(cursor=cursor, **query))
        seen += [r.run_id for r in page.records]
        if page.cursor is None:
            return seen
        cursor = page.cursor


async def test_pages_follow_each_other_newest_first_across_partitions(store: RunStore) -> None:
    ids = await queue_runs(store, 11)
    assert await every_page(store, tenant="t1", limit=3) == list(reversed(ids))


async def test_runs_of_one_batch_share_a_millisecond_and_still_page_exactly(
    store: RunStore,
) -> None:
    batch = await submit(store, "chat", count=25, tenant="t1")  # one enqueue: one `created`
    assert sorted(await every_page(store, tenant="t1", limit=4)) == sorted(batch)
    assert len(set(await every_page(store, tenant="t1", limit=4))) == 25


async def test_a_tenant_sees_its_runs_and_an_admin_sees_all(store: RunStore) -> None:
    mine = await queue_runs(store, 3, tenant="t1")
    theirs = await queue_runs(store, 2, tenant="t2")
    assert set(await every_page(store, tenant="t1", limit=10)) == set(mine)
    assert await every_page(store, tenant=None, limit=2) == list(reversed(mine + theirs))


async def test_filters_by_pipeline_metadata_state_and_time(
    store: RunStore, config: LifecycleConfig
) -> None:
    chat = await queue_runs(store, 3, user="u1")
    other = await queue_runs(store, 2, pipeline="embed", user="u2")
    assert await every_page(store, tenant="t1", pipeline="embed") == list(reversed(other))
    indexed = await every_page(
        store, tenant="t1", metadata=(("user", "u1"),), indexed_metadata=config.indexed_metadata
    )
    assert indexed == list(reversed(chat))
    unindexed = await every_page(store, tenant="t1", metadata=(("user", "u2"),), limit=1)
    assert unindexed == list(reversed(other))
    created = [(await store.get(r)).created_at for r in chat]  # type: ignore[union-attr]
    middle = int(created[1] * 1000)
    window = await every_page(store, tenant="t1", created_after=middle, created_before=middle)
    assert window == [chat[1]]
    leases = Leases(store.redis, config, "w", ["chat"])
    for partition in config.partition_ids:
        for claim in await claim_all(leases, partition=partition):
            await leases.finish(partition, [(claim, Succeeded('"ok"'))])
    done = await every_page(store, tenant="t1", states=frozenset({RunState.SUCCEEDED}))
    assert done == list(reversed(chat))


async def test_an_expired_run_is_a_hole_skipped_and_pruned(store: RunStore, redis: Redis) -> None:
    ids = await queue_runs(store, 4)
    await redis.delete(store.keyspace.run(ids[1]))  # as its TTL would
    assert await every_page(store, tenant="t1", limit=2) == [ids[3], ids[2], ids[0]]
    index = store.keyspace.runs_index(1 % 3, "t1")
    assert await redis.zscore(index, ids[1]) is None


async def test_a_sparse_filter_stops_at_its_budget_with_a_cursor(store: RunStore) -> None:
    wanted = await queue_runs(store, 1, user="needle")
    await queue_runs(store, 30, user="hay")
    page = await store.list_runs(
        ListQuery(tenant="t1", limit=1, budget_factor=3, metadata=(("user", "needle"),))
    )
    assert page.records == [] and page.cursor is not None, "a short page says where it stopped"
    assert (
        await every_page(
            store, tenant="t1", limit=1, budget_factor=3, metadata=(("user", "needle"),)
        )
        == wanted
    )


async def test_forgetting_deletes_an_ended_run_not_a_queued_one(
    store: RunStore, redis: Redis, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, "chat", tenant="t1", metadata={"user": "u1"})
    record = await store.get(run_id)
    assert record is not None
    assert await store.forget(record) is RunState.QUEUED
    assert await store.get(run_id) is not None
    await store.cancel(run_id, "test")
    assert await store.forget(record) is RunState.CANCELLED
    assert await store.get(run_id) is None
    assert await every_page(store, tenant="t1", indexed_metadata=config.indexed_metadata) == []
    assert await store.forget(record) is None


async def test_a_run_with_a_webhook_queues_its_delivery_when_it_ends(
    store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, "chat", fields={"webhook": "https://example.com/h"})
    (plain,) = await submit(store, "chat")
    leases = Leases(store.redis, config, "w", ["chat"])
    claims = await claim_all(leases)
    assert (await store.claim_webhooks(0, 1000, 10))[1] == [], "nothing before the end"
    error = ErrorInfo(type="ValueError", message="no")
    await leases.finish(0, [(c, Failed(error)) for c in claims])
    _, (first,) = await store.claim_webhooks(0, 200, 10)
    assert (first.run_id, first.attempt) == (run_id, 1), "only the run with a webhook"
    assert (await store.claim_webhooks(0, 200, 10))[1] == [], "taken: leased to its taker"
    await asyncio.sleep(0.3)
    _, (again,) = await store.claim_webhooks(0, 200, 10)
    assert (again.run_id, again.attempt, again.url) == (run_id, 2, "https://example.com/h")
    assert again.record is not None and again.record.state is RunState.FAILED
    assert not await store.webhook_done(run_id, 1, "delivered"), "a stale attempt records nothing"
    assert await store.webhook_done(run_id, 2, "retry", delay_ms=100)
    assert (await store.claim_webhooks(0, 200, 10))[1] == []
    await asyncio.sleep(0.15)
    _, (third,) = await store.claim_webhooks(0, 200, 10)
    assert third.attempt == 3
    assert await store.webhook_done(run_id, 3, "delivered")
    await asyncio.sleep(0.25)
    assert (await store.claim_webhooks(0, 200, 10))[1] == []
    assert await store.webhooks_pending() == 0
    assert plain != run_id


async def test_a_requeued_run_notifies_its_next_end_not_the_old_one(
    store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, "chat", fields={"webhook": "https://example.com/h"})
    leases = Leases(store.redis, config, "w", ["chat"])
    error = ErrorInfo(type="ValueError", message="no")
    await leases.finish(0, [(c, Failed(error)) for c in await claim_all(leases)])
    _, (held,) = await store.claim_webhooks(0, 60_000, 10)  # an attempt in flight
    assert await store.requeue_failed(run_id) == 1
    assert (await store.claim_webhooks(0, 0, 10))[1] == [], "the old end is not delivered"
    await leases.finish(0, [(c, Succeeded('"ok"')) for c in await claim_all(leases)])
    assert not await store.webhook_done(run_id, held.attempt, "delivered"), "stale: no effect"
    _, (fresh,) = await store.claim_webhooks(0, 200, 10)
    assert fresh.attempt == 1 and fresh.record is not None
    assert fresh.record.state is RunState.SUCCEEDED, "the new end is delivered"


async def test_runs_of_a_forgotten_pipeline_fail_pipeline_unavailable(
    store: RunStore, config: LifecycleConfig
) -> None:
    leases = Leases(store.redis, config, "old-worker", ["legacy"])
    definition = PipelineDefinition(name="legacy", input_schema={}, output_schema={})
    await leases.heartbeat([definition])
    ids = config.partition_ids  # the deployment's partitions, spread over the slots
    queued = await submit(store, "legacy", partition=ids[2])
    (running,) = await submit(store, "legacy", partition=ids[1])
    (claim,) = await claim_all(leases, partition=ids[1])
    assert claim.run_id == running
    await leases.leave()  # the last worker serving it goes (its lease will lapse)
    assert "legacy" in (await store.catalog()).definitions, "kept for the retention time"
    assert await store.fail_forgotten() == 0
    await asyncio.sleep(0.5)
    assert "legacy" not in (await store.catalog()).definitions
    assert await store.fail_forgotten() == 2
    for run_id in [*queued, running]:
        record = await store.get(run_id)
        assert record is not None and record.state is RunState.FAILED
        assert record.error is not None and record.error.type == "pipeline_unavailable"
    assert await store.fail_forgotten() == 0


async def test_a_pipeline_that_comes_back_keeps_its_runs(
    store: RunStore, config: LifecycleConfig
) -> None:
    definition = PipelineDefinition(name="back", input_schema={}, output_schema={})
    old = Leases(store.redis, config, "old", ["back"])
    await old.heartbeat([definition])
    queued = await submit(store, "back")
    await old.leave()
    await asyncio.sleep(0.5)
    await store.catalog()  # forgets it
    await Leases(store.redis, config, "new", ["back"]).heartbeat([definition])
    assert await store.fail_forgotten() == 0
    record = await store.get(queued[0])
    assert record is not None and record.state is RunState.QUEUED


def test_an_index_value_is_a_scalar() -> None:
    from langscale.lifecycle.store import index_value

    assert index_value("u1") == "u1"
    assert index_value(3) == "3" and index_value(True) == "true"
    assert index_value({"a": 1}) is None and index_value(None) is None
    assert index_value("x" * 201) is None


def test_job_spec_keeps_stream_log_filters() -> None:
    spec = JobSpec(run_id="r", pipeline="p", input=1, stream_options={"include_types": ["llm"]})
    again = JobSpec.from_stored("r", "p", spec.stored())
    assert again.stream_options == {"include_types": ["llm"]}


async def test_listing_and_webhooks_read_the_deployments_partitions_not_the_first_n(
    store: RunStore, config: LifecycleConfig
) -> None:
    ids = config.partition_ids  # spread over the hash slots: not 0, 1, 2
    assert ids != (0, 1, 2)
    hook = {"webhook": "https://example.com/h"}
    run_ids = [(await submit(store, partition=p, tenant="t1", fields=hook))[0] for p in ids]
    for run_id in run_ids:
        await store.cancel(run_id, "not needed")
    assert sorted(await every_page(store, tenant="t1")) == sorted(run_ids)
    assert await store.webhooks_pending() == len(ids)
