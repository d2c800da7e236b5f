"""Every key expires or is pruned: after a soak with kills, what is left in Redis is the
finished runs' keys (which expire at their TTL) and a fixed handful of registry keys."""

from __future__ import annotations

import signal
from typing import Any

import redis
from faults import submit_all, supervised, wait_final, work

from langscale.keys import Keyspace

from support import wait_until


def test_after_a_soak_with_kills_only_the_finished_runs_keys_remain(
    stack_factory: Any, record_db: Any
) -> None:
    stack = stack_factory(workers=3, lease_seconds=2, pipeline_heartbeat=0.5, stream_ttl=60)
    with supervised(stack):
        accepted = submit_all(stack, [work(i, seconds=1) for i in range(60)])
        streamed = submit_all(stack, [work(i, prefix="s", seconds=1) for i in range(20)], True)
        wait_until(lambda: len([w for w in stack.workers if w.alive()]) == 3, 10)
        stack.workers[0].stop(signal.SIGKILL)  # mid-run: its runs become suspects
        stack.workers[1].stop(signal.SIGKILL)
        runs = wait_final(stack, [*accepted, *streamed], timeout=240)
    assert {r["state"] for r in runs} == {"succeeded"}
    keyspace = Keyspace()
    db = redis.Redis.from_url(stack.redis_url, decode_responses=True)

    def dead_workers_pruned() -> bool:
        return db.zcard(keyspace.workers) == len([w for w in stack.workers if w.alive()])

    wait_until(dead_workers_pruned, 30)  # three missed heartbeats
    keys = set(db.keys("*"))
    runs_keys = {k for k in keys if ":run:" in k}
    stream_keys = {k for k in keys if ":events:" in k}
    assert len(runs_keys) == 80 and len(stream_keys) == 20
    assert all(db.ttl(k) > 0 for k in runs_keys | stream_keys)  # they expire at their TTL
    assert not {k for k in keys if ":replay:" in k}  # deleted when their runs ended
    for kind in ("queue", "leases", "suspects"):
        assert all(db.zcard(k) == 0 for k in keys if f":{kind}:" in k), kind
    counters = {k for k in keys if ":done:" in k}
    assert all(0 < db.ttl(k) <= 120 for k in counters)
    idempotency = {k for k in keys if ":idem:" in k}  # the test client sends keys
    assert all(db.ttl(k) > 0 for k in idempotency)
    served = {k for k in keys if ":served:" in k}
    assert all(db.zcard(k) <= 3 for k in served)  # the live workers only
    # An index's prune marker (a string, "<prefix>pruned:runs:...") lives 10 s.
    markers = {k for k in keys if ":pruned:" in k}
    marker_ttls = [db.pttl(k) for k in markers]
    assert all(ttl == -2 or 0 < ttl <= 10_000 for ttl in marker_ttls)  # -2: gone since
    indexes = {k for k in keys if ":runs:" in k} - markers  # listings: every run, by tenant
    assert all(db.ttl(k) > 0 for k in indexes)  # they expire after the last run they list
    listed = {run for k in indexes for run in db.zrange(k, 0, -1)}
    assert {k.rsplit(":", 1)[-1] for k in runs_keys} == listed
    rest = keys - runs_keys - stream_keys - counters - idempotency - served - indexes - markers
    rest -= {k for k in keys if k.startswith("test:")}  # the test's own history
    # Empty queues and lease sets vanish; what is left is one of each, whatever the load.
    rest -= {k for k in keys if any(f":{kind}:" in k for kind in ("queue", "leases", "suspects"))}
    fixed = {
        keyspace.workers,
        keyspace.pipelines,
        keyspace.pipelines_seen,
        keyspace.clock(0),
        keyspace.isolator(0),
        keyspace.failed(0),
        keyspace.tenants(0),
    }
    assert rest <= fixed, rest - fixed
