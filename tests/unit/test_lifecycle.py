"""The run lifecycle's scripts against a real Redis: the promises each one keeps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from lifecycle_helpers import claim_all, eventually, lifecycle_config, submit
from redis.asyncio import Redis

from langscale.contract import ErrorInfo, EventType, JobSpec, PipelineDefinition, RunState
from langscale.keys import Keyspace, new_run_id, partition_of
from langscale.lifecycle import (
    Applied,
    Failed,
    Leases,
    LifecycleConfig,
    Requeue,
    Retry,
    RunStore,
    StreamHub,
    Succeeded,
    follow,
)
from langscale.localredis import LocalRedis

LEASE = 0.3  # seconds: short, so lapses happen within a test


@pytest.fixture
def config(redis_server: LocalRedis) -> LifecycleConfig:
    return lifecycle_config(redis_server.url, lease_seconds=LEASE, result_ttl=60, stream_max_len=50)


@pytest.fixture
def store(redis: Redis, config: LifecycleConfig) -> RunStore:
    return RunStore(redis, config)


def worker(redis: Redis, config: LifecycleConfig, name: str, *pipelines: str) -> Leases:
    return Leases(redis, config, name, pipelines or ("chat",))


async def lapse(sweeper: Leases, partition: int = 0) -> int:
    """Renew as a live worker does (every few tenths of the lease) until a sweep takes
    lapsed leases back; returns how many it swept."""

    async def swept() -> int:
        await asyncio.sleep(LEASE / 4)
        return (await sweeper.renew(partition, []))[0]

    return await eventually(swept, timeout=10)


async def events_of(store: RunStore, run_id: str) -> list[tuple[int, str, Any]]:
    return [
        (seq, kind.value, json.loads(data))
        for seq, kind, data in await store.read_events(run_id, 0)
    ]


# --- ids and keys -------------------------------------------------------------------------


def test_a_run_id_carries_its_partition_and_is_a_version_4_uuid() -> None:
    for partition in (0, 7, 255):
        run_id = new_run_id(partition)
        assert partition_of(run_id) == partition and run_id[14] == "4"
    keyspace = Keyspace("ns")
    run_id = new_run_id(3)
    # Every key of a run and of its partition's queues shares one hash tag (one slot).
    tags = {
        k[k.index("{") : k.index("}") + 1]
        for k in (keyspace.run(run_id), keyspace.events(run_id), keyspace.queue(3, "chat"))
    }
    assert tags == {"{ns:3}"}


# --- submit -------------------------------------------------------------------------------


async def test_submit_records_queued_runs_with_their_jobs_and_a_ttl(
    redis: Redis, store: RunStore
) -> None:
    (run_id,) = await submit(store, metadata={"k": "v"})
    record = await store.get(run_id)
    assert record is not None
    assert (record.state, record.attempts, record.metadata) == (RunState.QUEUED, 0, {"k": "v"})
    assert record.created_at is not None
    # A queued run waits on its queue until it runs: its end sets the TTL, once.
    assert await redis.ttl(store.keyspace.run(run_id)) == -1
    # No stream unless someone streams or follows the run.
    assert not await redis.exists(store.keyspace.events(run_id))


async def test_admission_is_a_hard_limit_under_a_burst(
    redis_server: LocalRedis, redis: Redis
) -> None:
    config = lifecycle_config(redis_server.url, admission_max_ready=10)
    store = RunStore(redis, config)

    async def one() -> str:
        run_ids = store.new_run_ids(1, 0)
        spec = JobSpec(run_id=run_ids[0], pipeline="chat", input={})
        return (await store.submit([spec])).outcome

    outcomes = await asyncio.gather(*(one() for _ in range(200)))
    assert outcomes.count("queued") == 10 and outcomes.count("full") == 190


async def test_concurrent_requests_with_one_idempotency_key_share_one_run(
    store: RunStore,
) -> None:
    async def one() -> tuple[str, list[str]]:
        partition = store.partition_for("t", "key-1")
        run_ids = store.new_run_ids(1, partition)
        spec = JobSpec(run_id=run_ids[0], pipeline="chat", input={})
        submitted = await store.submit([spec], tenant="t", idempotency=("key-1", "hash-a"))
        return submitted.outcome, submitted.run_ids

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert sorted(outcome for outcome, _ in results) == ["queued"] + ["replay"] * 19
    assert len({run_ids[0] for _, run_ids in results}) == 1
    (run_id,) = results[0][1]
    assert await store.get(run_id) is not None  # the run every reply names exists


async def test_an_idempotent_replay_after_the_end_answers_the_runs_state_now(
    store: RunStore, redis: Redis, config: LifecycleConfig
) -> None:
    partition = store.partition_for("t", "k")
    (run_id,) = await submit(store, partition=partition, tenant="t", idempotency=("k", "h"))
    (claim,) = await claim_all(worker(redis, config, "w"), partition=partition)
    await worker(redis, config, "w").finish(partition, [(claim, Succeeded('"done"'))])
    spec = JobSpec(run_id=store.new_run_ids(1, partition)[0], pipeline="chat", input={})
    replay = await store.submit([spec], tenant="t", idempotency=("k", "h"))
    assert (replay.outcome, replay.run_ids, replay.state) == (
        "replay",
        [run_id],
        RunState.SUCCEEDED,
    )
    other = await store.submit([spec], tenant="t", idempotency=("k", "another body"))
    assert (other.outcome, other.run_ids) == ("conflict", [run_id])


async def test_a_refused_submit_reserves_no_idempotency_key(
    redis_server: LocalRedis, redis: Redis
) -> None:
    store = RunStore(redis, lifecycle_config(redis_server.url, admission_max_ready=1))
    await submit(store)  # the queue is full now
    spec = JobSpec(run_id=store.new_run_ids(1, 0)[0], pipeline="chat", input={})
    assert (await store.submit([spec], idempotency=("k", "h"))).outcome == "full"
    assert not await redis.keys("*idem*")


# --- claim --------------------------------------------------------------------------------


async def test_claim_takes_due_runs_of_its_own_pipelines_oldest_first_and_never_twice(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    chats = await submit(store, "chat", 3)
    embeds = await submit(store, "embed", 2)
    other = await submit(store, "summarize", 2)
    leases = worker(redis, config, "w", "chat", "embed")
    first = await claim_all(leases, slots=4)
    second = await claim_all(leases, slots=10)
    claimed = [c.run_id for c in first + second]
    assert len(first) == 4 and sorted(claimed) == sorted(chats + embeds)
    assert all(c.fence and c.attempt == 1 and c.queued_seconds >= 0 for c in first)
    assert not set(claimed) & set(other)  # a worker never takes a pipeline it lacks
    assert await claim_all(leases) == []
    assert (await store.get(chats[0])).state is RunState.RUNNING  # type: ignore[union-attr]
    (stats,) = await store.pipeline_stats(["summarize"])
    assert stats.ready == 2


async def test_queue_figures_count_ready_deferred_and_running(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    await submit(store, "chat", 5)
    leases = worker(redis, config, "w")
    claims = await claim_all(leases, slots=3)
    error = ErrorInfo(type="x", message="later")
    await leases.finish(0, [(claims[0], Retry(error, 60.0))])
    (stats,) = await store.pipeline_stats(["chat"])
    assert (stats.ready, stats.deferred, stats.in_progress) == (2, 1, 2)
    assert 0 <= stats.oldest_ready_age_seconds < 5


# --- fencing ------------------------------------------------------------------------------


async def test_a_run_ends_once_and_a_repeated_finish_changes_nothing(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store)
    leases = worker(redis, config, "w")
    (claim,) = await claim_all(leases)
    assert await leases.finish(0, [(claim, Succeeded('"first"'))]) == [Applied.APPLIED]
    late = Failed(ErrorInfo(type="x", message="late"))
    assert await leases.finish(0, [(claim, late)]) == [Applied.ALREADY]
    record = await store.get(run_id)
    assert record is not None
    assert (record.state, record.output, record.error) == (RunState.SUCCEEDED, "first", None)


async def test_a_stale_attempt_writes_nothing_after_its_run_was_taken_over(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, streamed=True)
    paused = worker(redis, config, "paused")
    (old,) = await claim_all(paused)
    await paused.append(0, [(run_id, old.fence, [(EventType.DATA, '"old-1"')])])
    # The paused worker stops renewing; a live one sweeps its lapsed lease and takes over.
    live = Leases(redis, config, "live", ["chat"])
    assert await lapse(live) == 1
    (new,) = (await worker(redis, config, "live2").claim(0, 1, idle=True)).claims
    assert new.fence != old.fence and new.attempt == 2
    # Every write of the stale attempt is refused...
    assert await paused.append(0, [(run_id, old.fence, [(EventType.DATA, '"old-2"')])]) == [-1]
    assert await paused.finish(0, [(old, Succeeded('"old"'))]) == [Applied.STALE]
    assert await paused.finish(0, [(old, Requeue("stopping"))]) == [Applied.STALE]
    assert await paused.recall(run_id, old.fence, "digest") is None
    assert await paused.remember(0, [(run_id, old.fence, "slot", "[]")]) == [Applied.STALE]
    assert (await paused.renew(0, [old]))[1] == [run_id]
    # ... while the current attempt's go through, after a retry event.
    assert await live.append(0, [(run_id, new.fence, [(EventType.DATA, '"new-1"')])]) != [-1]
    assert await live.finish(0, [(new, Succeeded('"new"'))]) == [Applied.APPLIED]
    events = await events_of(store, run_id)
    kinds = [kind for _, kind, _ in events]
    retry_at = kinds.index("retry")
    data_after_retry = [d for _, kind, d in events[retry_at:] if kind == "data"]
    assert data_after_retry == ["new-1"]
    assert events[-1][2] == {"state": "succeeded", "output": "new", "error": None}
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))


async def test_after_a_silence_longer_than_a_lease_holders_get_another_lease(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    await submit(store)
    holder = worker(redis, config, "holder")
    (claim,) = await claim_all(holder)
    # Nobody reaches Redis for three leases (Redis down, or every worker frozen)...
    await asyncio.sleep(3 * LEASE)
    other = worker(redis, config, "other")
    assert (await other.renew(0, []))[0] == 0  # ... so no lease counts as lapsed yet
    assert (await holder.renew(0, [claim]))[1] == []  # and the holder keeps its run


# --- crash accounting ---------------------------------------------------------------------


async def test_runs_of_a_dead_worker_become_suspects_and_run_alone(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    run_ids = await submit(store, count=3)
    dead = worker(redis, config, "dead")
    await claim_all(dead)
    sweeper = worker(redis, config, "sweeper")
    assert await lapse(sweeper) == 3
    stats = (await store.pipeline_stats(["chat"]))[0]
    assert (stats.suspects, stats.ready, stats.in_progress) == (3, 0, 0)
    record = await store.get(run_ids[0])
    assert record is not None and record.state is RunState.QUEUED and record.attempts == 1
    await submit(store, count=1)  # a fresh run
    busy, idle = worker(redis, config, "busy"), worker(redis, config, "idle")
    # A busy worker takes on the suspects: it starts nothing more until it is idle.
    assert (await busy.claim(0, 10, idle=False)).mode == "isolating"
    # An idle worker takes one suspect, to run alone.
    isolated = await idle.claim(0, 10, idle=True)
    assert isolated.mode == "isolated" and len(isolated.claims) == 1
    assert isolated.claims[0].isolated and isolated.claims[0].run_id in run_ids


async def test_a_run_that_kills_its_worker_alone_fails_and_frees_its_neighbours(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    poison = (await submit(store))[0]
    await asyncio.sleep(0.01)  # enqueued first: the first suspect to run alone
    neighbours = await submit(store, count=2)
    sweeper = worker(redis, config, "sweeper")
    await claim_all(worker(redis, config, "first-victim"))
    await lapse(sweeper)  # all three are suspects now
    for crash in (1, 2):  # LANGSCALE_MAX_CRASHES: 2
        result = await worker(redis, config, f"alone-{crash}").claim(0, 10, idle=True)
        assert result.mode == "isolated" and [c.run_id for c in result.claims] == [poison]
        await lapse(sweeper)  # its worker died while it ran alone
        if crash == 1:
            # Proven guilty: the suspects that died with it are innocent, queued as usual.
            (stats,) = await store.pipeline_stats(["chat"])
            assert (stats.suspects, stats.ready) == (1, 2)
    record = await store.get(poison)
    assert record is not None and record.state is RunState.FAILED
    assert record.error is not None and record.error.type == "worker_crashed"
    # The neighbours run as any run does, and succeed.
    leases = worker(redis, config, "healthy")
    claims = await claim_all(leases)
    assert sorted(c.run_id for c in claims) == sorted(neighbours)
    assert not any(c.isolated for c in claims)
    outcomes = [(c, Succeeded("null")) for c in claims]
    assert await leases.finish(0, outcomes) == [Applied.APPLIED] * 2


async def test_without_isolation_every_death_counts_against_every_run(
    redis_server: LocalRedis, redis: Redis
) -> None:
    config = lifecycle_config(
        redis_server.url, lease_seconds=LEASE, crash_isolation=False, max_attempts=2
    )
    store = RunStore(redis, config)
    (run_id,) = await submit(store)
    sweeper = worker(redis, config, "sweeper")
    for _ in range(2):
        await eventually(lambda: claim_all(worker(redis, config, "doomed")))
        await lapse(sweeper)
    record = await store.get(run_id)
    assert record is not None and record.state is RunState.FAILED
    assert record.error is not None and record.error.type == "run_lost"


# --- retries, cancel, re-queue ------------------------------------------------------------


async def test_a_retry_is_due_after_its_delay_and_says_why(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, streamed=True)
    leases = worker(redis, config, "w")
    (claim,) = await claim_all(leases)
    error = ErrorInfo(type="RateLimitError", message="slow down")
    await leases.finish(0, [(claim, Retry(error, 0.2))])
    assert await claim_all(leases) == []  # not due yet
    (again,) = await eventually(lambda: claim_all(leases), timeout=5)
    assert again.attempt == 2
    record = await store.get(run_id)
    assert record is not None and record.last_error == error
    states = [d for _, kind, d in await events_of(store, run_id) if kind == "state"]
    assert {
        "state": "queued",
        "reason": "retry",
        "retry_in": 0.2,
        "error": error.model_dump(),
    } in states


async def test_cancel_ends_a_run_once_and_its_attempt_writes_nothing_after(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    queued, running = await submit(store, count=2)
    leases = worker(redis, config, "w")
    assert await store.cancel(queued, "not needed") is RunState.QUEUED
    (claim,) = await claim_all(leases)
    assert claim.run_id == running  # the cancelled one never starts
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(store.keyspace.cancel_channel)
        await pubsub.get_message(timeout=1)
        assert await store.cancel(running, "stop it") is RunState.RUNNING
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None and message["data"].decode() == running
    assert await leases.finish(0, [(claim, Succeeded('"late"'))]) == [Applied.STALE]
    assert await store.cancel(running, "again") is RunState.CANCELLED  # nothing changes
    record = await store.get(running)
    assert record is not None and record.state is RunState.CANCELLED and record.output is None


async def test_an_operator_requeues_a_failed_run_with_its_job(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store)
    leases = worker(redis, config, "w")
    (claim,) = await claim_all(leases)
    await leases.finish(0, [(claim, Failed(ErrorInfo(type="x", message="y")))])
    assert await store.failed_run_ids(10) == [run_id]
    assert await store.requeue_failed(run_id) == 1
    assert await store.failed_run_ids(10) == []
    (again,) = await claim_all(leases)
    assert again.job.input == claim.job.input and again.attempt == 1
    assert await store.requeue_failed(run_id) == 0  # running, not failed


# --- reading events -----------------------------------------------------------------------


async def collect(store: RunStore, run_id: str, after: int = 0) -> list[tuple[int, str, Any]]:

    def connect() -> Redis:  # (a cluster client opens its own, to the partition's node)
        kwargs = store.redis.connection_pool.connection_kwargs
        return Redis(host=kwargs["host"], port=kwargs["port"], single_connection_client=True)

    hub = StreamHub(store.redis, store.keyspace, connect)
    try:
        return [
            (e.seq, e.type.value, json.loads(e.data))
            async for e in follow(store, hub, run_id, after)
        ]
    finally:
        await hub.close()


async def test_a_reader_of_a_trimmed_stream_is_told_how_many_events_it_missed(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, streamed=True)
    leases = worker(redis, config, "w")
    (claim,) = await claim_all(leases)
    for i in range(400):  # the stream keeps ~50
        await leases.append(0, [(run_id, claim.fence, [(EventType.DATA, json.dumps(i))])])
    await leases.finish(0, [(claim, Succeeded('"out"'))])
    events = await collect(store, run_id, after=3)
    seq, kind, data = events[0]
    assert kind == "gap" and data["lost"] == seq - 3 and data["lost"] > 250
    assert events[1][0] == seq + 1  # then every event it can still have, in order
    assert [s for s, _, _ in events[1:]] == list(range(seq + 1, events[-1][0] + 1))
    assert events[-1][1] == "end"


async def test_an_append_retried_after_a_lost_reply_repeats_no_event(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, streamed=True)
    leases = worker(redis, config, "w")
    (claim,) = await claim_all(leases)
    first = [(EventType.DATA, '"a"'), (EventType.DATA, '"b"')]
    await leases.append(0, [(run_id, claim.fence, first, 0)])
    await leases.append(0, [(run_id, claim.fence, first, 0)])  # the same call, retried
    # A retry that overlaps: "b" again, then "c" for the first time.
    await leases.append(0, [(run_id, claim.fence, [*first[1:], (EventType.DATA, '"c"')], 1)])
    await leases.finish(0, [(claim, Succeeded('"abc"'))])
    chunks = [data for _, kind, data in await collect(store, run_id) if kind == "data"]
    assert chunks == ["a", "b", "c"]


async def test_a_resume_at_the_end_closes_at_once(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    (run_id,) = await submit(store, streamed=True)
    leases = worker(redis, config, "w")
    (claim,) = await claim_all(leases)
    await leases.finish(0, [(claim, Succeeded('"out"'))])
    events = await collect(store, run_id)
    end_id = events[-1][0]
    assert await asyncio.wait_for(collect(store, run_id, after=end_id), 2) == []


async def test_an_unstreamed_run_gets_a_stream_once_followed_and_its_end_from_its_state(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    ended, running = await submit(store, count=2)
    leases = worker(redis, config, "w")
    claims = {c.run_id: c for c in await claim_all(leases)}
    await leases.finish(0, [(claims[ended], Succeeded('"out"'))])
    assert not await redis.exists(store.keyspace.events(ended))
    assert await collect(store, ended) == [
        (1, "end", {"state": "succeeded", "output": "out", "error": None})
    ]
    assert not await redis.exists(store.keyspace.events(ended))  # reading wrote nothing
    reader = asyncio.create_task(collect(store, running))
    await eventually(lambda: redis.exists(store.keyspace.events(running)))
    await leases.finish(0, [(claims[running], Succeeded('"later"'))])
    events = await asyncio.wait_for(reader, 10)
    assert [kind for _, kind, _ in events] == ["state", "end"]
    assert events[0][2] == {"state": "running", "attempt": 1}


# --- registry -----------------------------------------------------------------------------


async def test_pipelines_and_workers_are_forgotten_when_their_heartbeats_stop(
    redis_server: LocalRedis, redis: Redis
) -> None:
    config = lifecycle_config(redis_server.url, pipeline_heartbeat=0.1, pipeline_retention=0.5)
    store = RunStore(redis, config)
    definition = PipelineDefinition(name="chat", input_schema={}, output_schema={})
    assert await Leases(redis, config, "w1", ["chat"]).heartbeat([definition]) == 1
    catalog = await store.catalog()
    assert catalog.serving == {"chat": 1} and catalog.live_workers == 1
    await asyncio.sleep(0.4)  # heartbeats stale (3 beats); the pipeline is still retained
    catalog = await store.catalog()
    assert catalog.live_workers == 0 and catalog.serving == {"chat": 0}
    await asyncio.sleep(0.5)  # past the retention
    assert (await store.catalog()).definitions == {}
    assert await redis.zcard(config.keyspace.workers) == 0


async def test_a_worker_that_leaves_is_gone_at_once(
    redis: Redis, store: RunStore, config: LifecycleConfig
) -> None:
    definition = PipelineDefinition(name="chat", input_schema={}, output_schema={})
    leases = Leases(redis, config, "w1", ["chat"])
    await leases.heartbeat([definition])
    await leases.leave()
    assert (await store.catalog()).live_workers == 0
