"""Redis Cluster faults, on a real local cluster (3 masters, 3 replicas): a master killed
during load loses no run and runs none twice; a slot no node serves answers 503 with
Retry-After while workers keep their runs; a URL naming the wrong kind of Redis stops the
process at start, naming the setting."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from faults import records, submit_all, wait_final, work
from history import check

from langscale.keys import Keyspace
from langscale.localredis import LocalCluster, LocalRedis

from support import ROOT, langscale_command, langscale_env, wait_until

PARTITIONS = 8  # over the 3 masters (keys.partition_order spreads them)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    group = LocalCluster(tmp_path / "cluster").start()
    yield group
    group.stop()


def node_client(node: LocalRedis) -> redis.Redis:
    return redis.Redis(port=node.port, socket_timeout=5)


def test_a_master_killed_during_load_loses_no_run_and_runs_none_twice(
    stack_factory: Any, record_db: Any, cluster: LocalCluster
) -> None:
    stack = stack_factory(
        redis_url=cluster.url,
        workers=2,
        # Longer than the failover (node timeout 1 s, election, clients finding the new
        # master: 2-3 s on a loaded machine): a lease lapsing meanwhile runs its run again.
        lease_seconds=10,
        redis_partitions=PARTITIONS,
        redis_wait_replicas=1,  # docs/reliability.md: what a failover may not undo
    )
    accepted = submit_all(stack, [work(i, seconds=2, chunks=4) for i in range(40)], stream=True)
    accepted |= submit_all(stack, [work(i, prefix="p", seconds=1.5) for i in range(20)])
    wait_until(lambda: sum(r["state"] == "running" for r in records(stack, list(accepted))), 10)
    # The master serving the most of these runs dies; its replica takes over.
    keyspace = Keyspace()
    served: dict[int, int] = {}
    for run_id in accepted:
        port = cluster.master_of(keyspace.run(run_id)).port
        served[port] = served.get(port, 0) + 1
    victim = next(n for n in cluster.nodes if n.port == max(served, key=served.__getitem__))
    (replica,) = [
        n
        for n in cluster.nodes
        if node_client(n).info("replication").get("master_port") == victim.port
    ]
    assert victim.process is not None
    victim.process.send_signal(signal.SIGKILL)

    def failed_over() -> bool:
        client = node_client(replica)
        return (
            client.info("replication")["role"] == "master"
            and client.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
        )

    wait_until(failed_over, 30, interval=0.2)
    # As Kubernetes would, the dead node comes back (its files kept): it rejoins as the
    # new master's replica, so that shard can meet LANGSCALE_REDIS_WAIT_REPLICAS again.
    victim.start()
    wait_until(
        lambda: node_client(victim).info("replication").get("master_link_status") == "up", 30
    )
    more = submit_all(stack, [work(i, prefix="after", seconds=0.5) for i in range(10)])
    runs = wait_final(stack, [*accepted, *more])
    assert [r["state"] for r in runs] == ["succeeded"] * 70
    streamed = {r for r, value in accepted.items() if value["id"].startswith("w")}
    verdict = check(record_db, accepted | more, streamed, runs_url=cluster.url)
    assert verdict.clean, verdict.summary()
    assert verdict.executed_twice == [], verdict.summary()


def test_a_slot_no_node_serves_answers_503_and_workers_keep_their_runs(
    stack_factory: Any, record_db: Any, cluster: LocalCluster
) -> None:
    stack = stack_factory(
        redis_url=cluster.url, workers=1, lease_seconds=2, redis_partitions=PARTITIONS
    )
    accepted = submit_all(stack, [work(i, seconds=3, chunks=3) for i in range(12)])
    wait_until(lambda: all(r["state"] == "running" for r in records(stack, list(accepted))), 20)
    # One slot loses its owner in every node's view: the cluster is down (full coverage).
    key = Keyspace().run(next(iter(accepted)))
    owner = cluster.master_of(key)
    slot = int(node_client(owner).execute_command("CLUSTER KEYSLOT", key))
    for node in cluster.nodes:
        node_client(node).execute_command("CLUSTER DELSLOTS", slot)
    try:
        with httpx.Client(base_url=stack.url, timeout=30) as client:

            def refused() -> httpx.Response | None:
                response = client.post(
                    "/v1/runs", json={"pipeline": "recorded", "input": work(99, prefix="x")}
                )
                return response if response.status_code == 503 else None

            response = wait_until(refused, 20, interval=0.2)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["type"] == "redis_unavailable"
        assert int(response.headers["retry-after"]) > 0
        time.sleep(4)  # longer than a lease: the runs go on, their ends wait in the outbox
        assert all(w.alive() for w in stack.workers)
    finally:
        node_client(owner).execute_command("CLUSTER ADDSLOTS", slot)
    runs = wait_final(stack, list(accepted))
    assert [r["state"] for r in runs] == ["succeeded"] * 12
    verdict = check(record_db, accepted, runs_url=cluster.url)
    assert verdict.clean, verdict.summary()
    assert verdict.executed_twice == [], verdict.summary()


@pytest.mark.parametrize("process", ["worker", "gateway"])
def test_a_url_naming_the_wrong_kind_of_redis_stops_the_process_naming_the_setting(
    redis_server: LocalRedis, cluster: LocalCluster, logs_dir: Path, process: str
) -> None:
    node = cluster.nodes[0]
    for url in (f"redis+cluster://127.0.0.1:{redis_server.port}", f"redis://127.0.0.1:{node.port}"):
        args = [*langscale_command(process)]
        if process == "gateway":
            args += ["--port", "0"]
        done = subprocess.run(
            args,
            env=langscale_env(url, worker_http_port=0),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0, done.stdout + done.stderr
        assert "LANGSCALE_REDIS_URL" in done.stdout + done.stderr
