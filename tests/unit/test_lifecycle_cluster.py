"""The lifecycle on a real Redis Cluster (3 masters, 3 replicas, in-process clients), and
what makes it cluster-shaped: partitions spread over the slots, the cluster client's own
pub/sub, blocking reads and WAIT, the wrong kind of Redis refused, fence tokens that a
failover cannot repeat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from lifecycle_helpers import claim_all, lifecycle_config, submit
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.crc import key_slot

from langscale.contract import EventType
from langscale.keys import MAX_PARTITIONS, Keyspace, partition_order
from langscale.lifecycle import Applied, Leases, RunStore, StreamHub, Succeeded, follow
from langscale.localredis import LocalCluster, LocalRedis
from langscale.redis import (
    ClusterClient,
    ClusterUnavailable,
    WrongRedisKind,
    check_redis_kind,
    create_redis,
    parse_cluster_url,
)
from langscale.settings import Settings, describe_errors

PARTITIONS = 12


@pytest.fixture
async def cluster_redis(redis_cluster: LocalCluster) -> AsyncIterator[ClusterClient]:
    client = create_redis(Settings(redis_url=redis_cluster.url))
    assert isinstance(client, ClusterClient)
    await client.flushdb()
    yield client
    await client.aclose()


def masters_of(partitions: tuple[int, ...], namespace: str = "langscale") -> list[int]:
    """How many of ``partitions`` fall in each third of the slots (three equal masters)."""
    counts = [0, 0, 0]
    for n in partitions:
        counts[key_slot(f"{namespace}:{n}".encode()) * 3 // 16384] += 1
    return counts


# --- partitions ---------------------------------------------------------------------------


def test_partitions_are_taken_so_any_number_of_them_spreads_over_the_masters() -> None:
    for namespace in ("langscale", "prod", "team-a"):
        order = partition_order(namespace)
        assert order[0] == 0 and sorted(order) == list(range(MAX_PARTITIONS))
        for n in (6, 12, 24, 48):
            assert min(masters_of(order[:n], namespace)) >= n // 6, (namespace, n)
    # The naive first n (0..n-1) leave a master with a third of its share or less.
    assert min(masters_of(tuple(range(16)))) <= 3
    assert Keyspace().partitions(1) == (0,)  # a single Redis keeps its one partition


# --- URLs and the kind of Redis -----------------------------------------------------------


def test_a_cluster_url_names_any_nodes_and_credentials() -> None:
    url = parse_cluster_url("rediss+cluster://app:s%40cret@a.example:7000,[::1]:7001,b.example")
    assert url.nodes == [("a.example", 7000), ("::1", 7001), ("b.example", 6379)]
    assert (url.username, url.password, url.ssl) == ("app", "s@cret", True)
    with pytest.raises(ValueError, match="host:port"):
        parse_cluster_url("redis+cluster://")


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://", "redis+cluster://h:port", "redis+cluster://h:7000/2", "http://h:6379"],
)
def test_a_bad_redis_url_is_refused_at_start_naming_the_setting(url: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(redis_url=url)
    assert "LANGSCALE_REDIS_URL" in describe_errors(raised.value)


async def test_the_wrong_kind_of_redis_is_refused_naming_the_setting(
    redis_cluster: LocalCluster, redis_server: LocalRedis
) -> None:
    node = redis_cluster.nodes[0]
    plain_at_cluster = Redis(port=node.port)
    cluster_at_plain = create_redis(
        Settings(redis_url=redis_server.url.replace("redis://", "redis+cluster://"))
    )
    try:
        for client, url in (
            (plain_at_cluster, f"redis://127.0.0.1:{node.port}"),
            (cluster_at_plain, redis_server.url),
        ):
            with pytest.raises(WrongRedisKind, match="LANGSCALE_REDIS_URL"):
                await check_redis_kind(client, url)
        await check_redis_kind(create_redis(Settings(redis_url=redis_cluster.url)), "")
    finally:
        await plain_at_cluster.aclose()
        await cluster_at_plain.aclose()


# --- the lifecycle on the cluster ---------------------------------------------------------


async def test_runs_of_partitions_on_every_master_are_submitted_claimed_and_read_back(
    cluster_redis: ClusterClient, redis_cluster: LocalCluster
) -> None:
    config = lifecycle_config(redis_cluster.url, redis_partitions=PARTITIONS)
    store = RunStore(cluster_redis, config)  # type: ignore[arg-type]
    leases = Leases(cluster_redis, config, "w", ["chat"])  # type: ignore[arg-type]
    owners = {redis_cluster.master_of(config.keyspace.clock(p)).port for p in config.partition_ids}
    assert len(owners) == 3  # the partitions live on all three masters
    run_ids = [r for p in config.partition_ids for r in await submit(store, partition=p)]
    claims = [c for p in config.partition_ids for c in await claim_all(leases, partition=p)]
    assert sorted(c.run_id for c in claims) == sorted(run_ids)
    for claim in claims:
        (applied,) = await leases.finish(claim.partition, [(claim, Succeeded('"ok"'))])
        assert applied is Applied.APPLIED
    records = await store.get_many(run_ids)  # one pipeline over every node
    assert [r.output if r else None for r in records] == ["ok"] * len(run_ids)
    stats = await store.pipeline_stats(["chat"])
    assert stats[0].ready == stats[0].in_progress == 0


async def test_a_subscriber_on_one_node_hears_what_scripts_publish_on_every_node(
    cluster_redis: ClusterClient, redis_cluster: LocalCluster
) -> None:
    config = lifecycle_config(redis_cluster.url, redis_partitions=PARTITIONS)
    store = RunStore(cluster_redis, config)  # type: ignore[arg-type]
    leases = Leases(cluster_redis, config, "w", ["chat"])  # type: ignore[arg-type]
    async with cluster_redis.pubsub() as pubsub:
        await pubsub.subscribe(config.keyspace.finished_channel)
        await pubsub.get_message(timeout=1)
        ended = []
        for partition in config.partition_ids:
            (run_id,) = await submit(store, partition=partition)
            (claim,) = await claim_all(leases, partition=partition)
            await leases.finish(partition, [(claim, Succeeded('"ok"'))])
            ended.append(run_id)
        heard = []
        while len(heard) < len(ended):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            assert message is not None, f"heard {len(heard)} of {len(ended)}"
            heard += message["data"].decode().partition("\n")[0].split()  # ids, records
    assert sorted(heard) == sorted(ended)


async def test_followers_wait_on_the_node_of_their_runs_partition(
    cluster_redis: ClusterClient, redis_cluster: LocalCluster
) -> None:
    config = lifecycle_config(redis_cluster.url, redis_partitions=PARTITIONS)
    store = RunStore(cluster_redis, config)  # type: ignore[arg-type]
    leases = Leases(cluster_redis, config, "w", ["chat"])  # type: ignore[arg-type]
    hub = StreamHub(cluster_redis, config.keyspace, lambda: pytest.fail("no single connection"))  # type: ignore[arg-type]
    partitions = config.partition_ids[:3]
    runs = {p: (await submit(store, partition=p, streamed=True))[0] for p in partitions}

    async def read(run_id: str) -> list[str]:
        return [e.type.value async for e in follow(store, hub, run_id)]

    readers = [asyncio.create_task(read(r)) for r in runs.values()]
    await asyncio.sleep(0.3)  # they wait on the hub: one blocking read per partition
    for partition in partitions:
        (claim,) = await claim_all(leases, partition=partition)
        await leases.append(partition, [(claim.run_id, claim.fence, [(EventType.DATA, '"a"')])])
        await leases.finish(partition, [(claim, Succeeded('"a"'))])
    try:
        results = await asyncio.wait_for(asyncio.gather(*readers), 20)
    finally:
        await hub.close()
    assert results == [["state", "state", "data", "end"]] * 3


async def test_a_new_run_waits_for_a_replica_of_its_master(
    cluster_redis: ClusterClient, redis_cluster: LocalCluster
) -> None:
    config = lifecycle_config(redis_cluster.url, redis_partitions=PARTITIONS, redis_wait_replicas=1)
    store = RunStore(cluster_redis, config)  # type: ignore[arg-type]
    leases = Leases(cluster_redis, config, "w", ["chat"])  # type: ignore[arg-type]
    for partition in config.partition_ids[:3]:
        (run_id,) = await submit(store, partition=partition)
        (claim,) = await claim_all(leases, partition=partition)
        assert claim.run_id == run_id
        (applied,) = await leases.finish(partition, [(claim, Succeeded('"ok"'))])
        assert applied is Applied.APPLIED


async def test_a_slot_no_node_serves_is_unavailable_and_served_again_once_covered(
    cluster_redis: ClusterClient, redis_cluster: LocalCluster
) -> None:
    key = "{langscale:uncovered}:x"
    await cluster_redis.set(key, "kept")
    slot = key_slot(key.encode())
    owner = Redis(port=(await cluster_redis.node_for(key))[1])
    nodes = [Redis(port=node.port) for node in redis_cluster.nodes]
    try:
        for node in nodes:
            await node.execute_command("CLUSTER DELSLOTS", slot)
        # Once the client re-reads a layout without the slot (redis-py answers a bare
        # KeyError then): unavailable, as for any outage, never a crash.
        for _ in range(3):
            with pytest.raises(ClusterUnavailable):
                await cluster_redis.get(key)
    finally:
        await owner.execute_command("CLUSTER ADDSLOTS", slot)
    # The client finds the slot again by itself.
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        try:
            assert await cluster_redis.get(key) == b"kept"
            break
        except ClusterUnavailable:
            assert asyncio.get_running_loop().time() < deadline, "the slot stayed unreachable"
            await asyncio.sleep(0.2)
    for client in (owner, *nodes):
        await client.aclose()


# --- fencing across a failover ------------------------------------------------------------


async def test_a_claim_a_failover_lost_and_made_again_gets_a_token_the_first_cannot_use(
    redis: Redis, redis_server: LocalRedis
) -> None:
    config = lifecycle_config(redis_server.url)
    store = RunStore(redis, config)
    leases = Leases(redis, config, "w", ["chat"])
    (run_id,) = await submit(store)
    keyspace = config.keyspace
    run, queue = keyspace.run(run_id), keyspace.queue(0, "chat")
    # What a replica had before the claim reached it: the run queued.
    before = {k.decode(): v for k, v in (await redis.hgetall(run)).items()}  # type: ignore[misc]
    (first,) = await claim_all(leases)
    await asyncio.sleep(0.002)  # the claim made again comes later (after the failover)
    # The master dies before replicating the claim; its replica takes over without it.
    await redis.delete(run, keyspace.leases(0, "chat"))
    await redis.hset(run, mapping=before)  # type: ignore[misc]
    await redis.zadd(queue, {run_id: int(before["created"])})
    (second,) = await claim_all(leases)
    assert second.fence != first.fence and second.attempt == first.attempt == 1
    assert await leases.finish(0, [(first, Succeeded('"first"'))]) == [Applied.STALE]
    assert await leases.finish(0, [(second, Succeeded('"second"'))]) == [Applied.APPLIED]
    record = await store.get(run_id)
    assert record is not None and record.output == "second"
    assert json.loads(before["job"])  # (the job was there to claim again)
