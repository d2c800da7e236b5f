"""What the hot path costs Redis: the commands scripts call per run, batched where a call
holds many runs (issue 16: Redis commands per run, counted with INFO commandstats)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from collections.abc import Awaitable
from importlib import resources
from typing import TypeVar

from lifecycle_helpers import claim_all, lifecycle_config, store_and_leases, submit
from redis.asyncio import Redis

from langscale.contract import JobSpec
from langscale.keys import partition_of
from langscale.lifecycle import Applied, RunStore, Succeeded
from langscale.lifecycle.store import _Group
from langscale.localredis import LocalRedis

T = TypeVar("T")


async def calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_every_script_that_ends_runs_writes_their_counters_and_notice() -> None:
    scripts = resources.files("langscale.lifecycle") / "scripts"
    for script in scripts.iterdir():
        text = script.read_text()
        if script.name != "_prelude.lua" and re.search(r"\bend_run\(", text):
            assert "flush_ends(" in text, f"{script.name} ends runs but never calls flush_ends"


async def test_a_batch_of_runs_is_claimed_and_ended_with_one_call_per_structure(
    redis: Redis, redis_server: LocalRedis
) -> None:
    config, store, leases = store_and_leases(redis, redis_server.url)
    run_ids = await submit(store, count=10)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(config.keyspace.finished_channel)
        await pubsub.get_message(timeout=1)
        before = await calls(redis)
        claims = await claim_all(leases)
        applied = await leases.finish(0, [(c, Succeeded('"ok"')) for c in claims])
        after = await calls(redis)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert applied == [Applied.APPLIED] * 10
    used = {name: after[name] - before.get(name, 0) for name in after}
    # Off the queue and onto the leases, then off the leases: one command each for all ten.
    assert used["zrem"] == 2 and used["zadd"] == 1
    # A run's state is set once to start it and once to end it; the counter and the notice
    # are written once for the batch.
    assert used["hset"] == 20 and used["incrby"] == 1 and used["publish"] == 1
    assert 10 <= used["expire"] <= 11  # each run's TTL, at its end; a new counter's
    assert message is not None
    notice = message["data"].decode()
    assert sorted(notice.partition("\n")[0].split()) == sorted(run_ids)
    # The notice carries each run's record, as a read would give it: no read needed.
    records = await store.get_many(run_ids)
    assert store.finished_records(notice) == dict(zip(run_ids, records, strict=True))
    (stats,) = await store.pipeline_stats(["chat"])
    assert stats.in_progress == 0


async def used_by(redis: Redis, step: Awaitable[T]) -> tuple[T, dict[str, int]]:
    """What ``step`` returned, and the commands it cost Redis (INFO itself not counted)."""
    before = await calls(redis)
    result = await step
    after = await calls(redis)
    used = {name: after[name] - before.get(name, 0) for name in after if name != "info"}
    return result, {name: n for name, n in used.items() if n}


async def test_the_commands_each_step_of_a_run_costs(
    redis: Redis, redis_server: LocalRedis
) -> None:
    config, store, leases = store_and_leases(redis, redis_server.url)
    await submit(store)  # the listing indexes are pruned at most once per 10 s: done here
    await leases.finish(0, [(c, Succeeded('"ok"')) for c in await claim_all(leases)])
    for count, bounds in ((1, (11, 10, 9, 1)), (10, (20, 28, 36, 10))):
        run_ids, enqueue = await used_by(redis, submit(store, count=count))
        claims, start = await used_by(redis, claim_all(leases))
        _, end = await used_by(redis, leases.finish(0, [(c, Succeeded('"ok"')) for c in claims]))
        _, read = await used_by(redis, store.get_many(run_ids))
        used = [sum(step.values()) for step in (enqueue, start, end, read)]
        assert all(n <= bound for n, bound in zip(used, bounds, strict=True)), (count, used)
        # Per run: one HSET creates its hash, one starts it, one ends it; one EXPIRE gives
        # it its TTL, at its end; the queue and each listing index get one ZADD per call.
        assert (enqueue["hset"], start["hset"], end["hset"]) == (count, count, count)
        assert "expire" not in enqueue and count <= end["expire"] <= count + 1  # + a new counter
        assert enqueue["zadd"] == 3 and "hdel" not in end and "del" not in end
        ttls = [await redis.ttl(store.keyspace.run(r)) for r in run_ids]
        assert all(0 < ttl <= config.header.result_ttl for ttl in ttls)
    # Workers ask every partition in turn: one with nothing in it costs the call and one
    # EXISTS.
    nothing, asked = await used_by(redis, claim_all(leases))
    assert nothing == [] and asked == {"evalsha": 1, "exists": 1}


async def test_an_index_a_forget_emptied_gets_its_ttl_again_at_the_next_submit(
    redis: Redis, redis_server: LocalRedis
) -> None:
    _config, store, leases = store_and_leases(redis, redis_server.url)
    (run_id,) = await submit(store)
    await leases.finish(0, [(c, Succeeded('"ok"')) for c in await claim_all(leases)])
    record = await store.get(run_id)
    assert record is not None and await store.forget(record) == "succeeded"
    index = store.keyspace.runs_index(0, record.tenant)
    assert not await redis.exists(index)
    await submit(store)
    assert await redis.ttl(index) > 0


async def test_a_run_whose_attempt_stored_llm_answers_loses_them_when_it_ends(
    redis: Redis, redis_server: LocalRedis
) -> None:
    _config, store, leases = store_and_leases(redis, redis_server.url)
    (run_id,) = await submit(store)
    (claim,) = await claim_all(leases)
    assert await leases.remember(0, [(run_id, claim.fence, "s:1", '"a"')]) == [Applied.APPLIED]
    assert await redis.exists(store.keyspace.replay(run_id))
    await leases.finish(0, [(claim, Succeeded('"ok"'))])
    assert not await redis.exists(store.keyspace.replay(run_id))


async def test_submits_at_the_same_time_share_one_call_and_a_retried_call_changes_nothing(
    redis: Redis, redis_server: LocalRedis
) -> None:
    _config, store, leases = store_and_leases(redis, redis_server.url)
    batches, used = await used_by(
        redis, asyncio.gather(*(submit(store, count=2, metadata={"i": i}) for i in range(5)))
    )
    assert used["evalsha"] == 1 and used["hset"] == 10 and used["zadd"] == 3
    run_ids = [run_id for batch in batches for run_id in batch]
    records = await store.get_many(run_ids)
    assert [r.metadata["i"] if r else None for r in records] == [i // 2 for i in range(10)]
    # The same call again (as after a lost reply): the runs exist, nothing is re-created.
    claims = await claim_all(leases)
    assert len(claims) == 10
    spec = JobSpec(run_id=run_ids[0], pipeline="chat", input={"n": 0})
    again = [("", "", "chat", "default", "", 0, "", "", 1, run_ids[0], spec.stored())]
    keys = [store.keyspace.run(run_ids[0])]
    (reply,) = await store._enqueue_many(0, [_Group(keys, list(again[0]), asyncio.Future())])
    assert reply[0] == b"queued"
    assert await redis.zcard(store.keyspace.queue(0, "chat")) == 0
    record = await store.get(run_ids[0])
    assert record is not None and record.state == "running"


async def test_requests_that_find_the_pipeline_cache_stale_at_once_share_one_read(
    redis: Redis, redis_server: LocalRedis
) -> None:
    from langscale_gateway.catalog import PipelineCatalog

    store = RunStore(redis, lifecycle_config(redis_server.url))
    await store.catalog()  # the script is loaded in Redis
    catalog = PipelineCatalog(store, ttl=60)
    _, used = await used_by(redis, asyncio.gather(*(catalog.all() for _ in range(20))))
    assert used["evalsha"] == 1  # one registry read (the forgotten-pipeline sweep reads none)


async def test_a_wake_up_names_the_partition_its_runs_became_due_in(
    redis: Redis, redis_server: LocalRedis
) -> None:
    # Workers then ask that partition alone, not every one (most are empty on a cluster).
    config, store, _leases = store_and_leases(redis, redis_server.url, redis_partitions=4)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(config.keyspace.wake_channel("chat"))
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        for partition in (3, 1):
            await submit(store, partition=partition)
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None
            assert message["data"].decode() == config.keyspace.prefix(partition)


async def test_submits_that_arrive_together_share_one_call_and_calls_go_round_partitions(
    redis: Redis, redis_server: LocalRedis
) -> None:
    # On a cluster a random partition per submit made ~one submit per call (~8 commands).
    config, store, _leases = store_and_leases(redis, redis_server.url, redis_partitions=4)
    ids = config.partition_ids

    async def one() -> str:
        (run_id,) = store.new_run_ids(1, store.partition_for("t"))
        await store.submit([JobSpec(run_id=run_id, pipeline="chat", input={})])
        return run_id

    together, enqueued = await used_by(redis, asyncio.gather(*(one() for _ in range(10))))
    assert len({partition_of(r) for r in together}) == 1
    assert enqueued["publish"] == 1, enqueued  # one enqueue_many call, one wake-up
    apart = [partition_of(await one()) for _ in range(8)]
    assert Counter(apart) == dict.fromkeys(ids, 2)
    turn = [ids.index(p) for p in apart]
    assert all(b == (a + 1) % 4 for a, b in itertools.pairwise(turn))
