"""RunStore and the worker's claim script against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq.jobs import deserialize_job_raw
from redis.asyncio import Redis

from langscale import keys
from langscale.contract import JOB_FUNCTION, ErrorInfo, JobSpec, RunState, new_run_id, now_ms
from langscale.localredis import LocalRedis
from langscale.redis import load_job
from langscale.runs import RunStore
from langscale_worker.worker import _CLAIM_READY_JOBS

QUEUE = "test:queue"


@pytest.fixture
async def redis(redis_server: LocalRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushdb()  # our own server, started for this module
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: Redis) -> RunStore:
    return RunStore(redis, queue_name=QUEUE, result_ttl=60)


def spec(**overrides: object) -> JobSpec:
    return JobSpec(run_id=new_run_id(), pipeline="chat", input={"question": "x"}, **overrides)


async def test_enqueue_writes_an_arq_job_and_a_queued_run(redis: Redis, store: RunStore) -> None:
    job = spec()
    await store.enqueue([job], {"k": "v"})
    function, args, kwargs, _, _ = deserialize_job_raw(
        await redis.get(keys.job_key(job.run_id)), deserializer=load_job
    )
    assert function == JOB_FUNCTION and kwargs == {}
    assert JobSpec.model_validate(args[0]) == job
    assert await redis.zscore(QUEUE, job.run_id) == job.enqueued_at_ms
    record = await store.get(job.run_id)
    assert record is not None
    assert (record.state, record.attempts, record.metadata) == (RunState.QUEUED, 0, {"k": "v"})
    assert 0 < await redis.ttl(keys.run_key(job.run_id)) <= 60


async def test_a_run_ends_once_even_if_its_work_ran_twice(store: RunStore) -> None:
    job = spec()
    await store.enqueue([job])
    assert await store.start(job.run_id) == (RunState.RUNNING, 1)
    assert await store.start(job.run_id) == (RunState.RUNNING, 2)  # redelivered
    assert await store.finish(job.run_id, RunState.SUCCEEDED, output_json='"first"')
    assert not await store.finish(
        job.run_id, RunState.FAILED, error=ErrorInfo(type="x", message="late")
    )
    record = await store.get(job.run_id)
    assert record is not None
    assert (record.state, record.output, record.error) == (RunState.SUCCEEDED, "first", None)
    # A delivery after the end does not run again.
    assert await store.start(job.run_id) == (RunState.SUCCEEDED, -1)


async def test_finish_announces_the_run_on_the_finished_channel(
    redis: Redis, store: RunStore
) -> None:
    job = spec()
    await store.enqueue([job])
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(keys.RUN_FINISHED_CHANNEL)
        await pubsub.get_message(timeout=1)  # subscribe confirmation
        await store.finish(job.run_id, RunState.SUCCEEDED)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None and message["data"].decode() == job.run_id


async def test_claim_takes_ready_jobs_up_to_the_free_slots_and_never_twice(
    redis: Redis, store: RunStore
) -> None:
    ready = [spec() for _ in range(5)]
    later = spec(enqueued_at_ms=now_ms() + 60_000)  # deferred: not ready yet
    await store.enqueue([*ready, later])
    claim = redis.register_script(_CLAIM_READY_JOBS)

    def args(slots: int) -> list[object]:
        return [
            now_ms(),
            slots,
            keys.in_progress_key_prefix,
            10_000,
            keys.job_key(""),
            keys.run_key(""),
        ]

    leases = keys.leases_key(QUEUE)
    first = await claim(keys=[QUEUE, leases], args=args(3))
    second = await claim(keys=[QUEUE, leases], args=args(10))
    # [job id, score, payload, attempts so far] per claimed job
    first_ids = [x.decode() for x in first[::4]]
    second_ids = [x.decode() for x in second[::4]]
    assert all(payload for payload in first[2::4]) and set(first[3::4]) == {b"0"}
    assert len(first_ids) == 3 and len(second_ids) == 2
    assert set(first_ids) | set(second_ids) == {j.run_id for j in ready}
    assert await claim(keys=[QUEUE, leases], args=args(10)) == []
    assert await redis.pttl(keys.in_progress_key_prefix + first_ids[0]) > 9_000
    assert await redis.zcard(leases) == 5  # each held job is counted as in progress


async def test_queue_figures_count_ready_running_and_deferred(
    redis: Redis, store: RunStore
) -> None:
    from langscale.queue import QueueMonitor

    ready = [spec() for _ in range(5)]
    await store.enqueue([*ready, spec(enqueued_at_ms=now_ms() + 60_000)])
    claim = redis.register_script(_CLAIM_READY_JOBS)
    leases = keys.leases_key(QUEUE)
    await claim(
        keys=[QUEUE, leases],
        args=[now_ms(), 2, keys.in_progress_key_prefix, 10_000, keys.job_key(""), keys.run_key("")],
    )
    stats = await QueueMonitor(redis, QUEUE).read()
    assert (stats.ready, stats.in_progress, stats.deferred, stats.backlog) == (3, 2, 1, 5)
    assert 0 <= stats.oldest_ready_age_seconds < 5


async def test_a_lapsed_lease_puts_its_job_at_the_front_of_the_queue(
    redis: Redis, store: RunStore
) -> None:
    from langscale_worker.worker import _RENEW_LEASES

    first = spec(enqueued_at_ms=now_ms() - 5_000)
    await store.enqueue([first])
    claim = redis.register_script(_CLAIM_READY_JOBS)
    leases = keys.leases_key(QUEUE)
    args = [keys.in_progress_key_prefix, 50, keys.job_key(""), keys.run_key("")]
    await claim(keys=[QUEUE, leases], args=[now_ms(), 1, *args])
    backlog = [spec() for _ in range(3)]  # queued while `first` ran
    await store.enqueue(backlog)
    # Its worker dies: nobody renews; after the 50 ms lease a live worker's sweep runs.
    renew = redis.register_script(_RENEW_LEASES)
    deadline = now_ms() + 5_000
    while now_ms() < deadline:
        if await renew(keys=[QUEUE, leases], args=[10_000, keys.in_progress_key_prefix, now_ms()]):
            break
    due = await redis.zrangebyscore(QUEUE, "-inf", now_ms())
    assert due[0].decode() == first.run_id
    assert {d.decode() for d in due[1:]} == {b.run_id for b in backlog}
    assert await redis.zcard(leases) == 0
