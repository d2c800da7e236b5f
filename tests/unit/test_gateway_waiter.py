"""The gateway's run waiter against a real Redis: a run that a worker ends before its
request begins to wait (it can end within the submit's own round trip) is answered from
its end notice at once, not at the waiter's slow re-read."""

from __future__ import annotations

import asyncio

import pytest
from lifecycle_helpers import claim_all, eventually, lifecycle_config, submit
from redis.asyncio import Redis

from langscale.contract import RunState
from langscale.lifecycle import Leases, RunStore, Succeeded
from langscale.localredis import LocalRedis
from langscale_gateway import waiter as waiter_module
from langscale_gateway.waiter import RunWaiter


async def test_a_run_that_ended_before_its_wait_began_is_answered_from_its_notice(
    redis: Redis, redis_server: LocalRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiter_module, "RECHECK_SECONDS", 600.0)  # only a notice can answer
    config = lifecycle_config(redis_server.url)
    store = RunStore(redis, config)
    leases = Leases(redis, config, "w", ["chat"])
    waiter = RunWaiter(redis, store, asyncio.Event())
    await waiter.start()
    try:
        (run_id,) = await submit(store)
        (claim,) = await claim_all(leases)
        await leases.finish(0, [(claim, Succeeded('"done"'))])
        # The notice arrives before anyone waits for the run.

        async def kept() -> bool:
            return run_id in waiter._recent

        await eventually(kept, timeout=30)
        async with asyncio.timeout(30):
            (record,) = await waiter.wait([run_id], timeout=300, queued=True)
    finally:
        await waiter.stop()
    assert record is not None
    assert record.state is RunState.SUCCEEDED and record.output == "done"
