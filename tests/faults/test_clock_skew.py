"""One clock: a process whose wall clock is a minute off changes nothing (libfaketime)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from faults import records, submit_all, wait_final, work
from history import check

from support import faketime, wait_until


@pytest.mark.parametrize("offset", ["+60s", "-60s"])
def test_a_worker_a_minute_off_runs_nothing_twice_and_loses_nothing(
    stack_factory: Any, record_db: Any, offset: str
) -> None:
    stack = stack_factory(workers=1, lease_seconds=3, worker_concurrency=10)
    skewed = stack.add_worker(environment=faketime(offset), worker_concurrency=10)
    stack.wait_ready()
    inputs = [work(i, seconds=1.5, chunks=3) for i in range(40)]
    accepted = submit_all(stack, inputs[:20]) | submit_all(stack, inputs[20:], stream=True)
    runs = wait_final(stack, list(accepted))
    verdict = check(record_db, accepted, streamed=set(list(accepted)[20:]))
    assert verdict.clean, verdict.summary()
    assert verdict.executed_twice == [], verdict.summary()
    assert [r["state"] for r in runs] == ["succeeded"] * 40
    assert all(r["attempts"] == 1 for r in runs)
    pids = {int(r["worker"].split(":")[1]) for r in runs}
    assert skewed.pid in pids and len(pids) == 2  # the skewed worker did its share


def test_a_gateway_a_minute_ahead_neither_delays_invokes_nor_misreads_the_queue(
    stack_factory: Any, record_db: Any
) -> None:
    stack = stack_factory(workers=1, start=False)
    stack.start(workers=1)
    stack.gateway.stop()
    stack.start_gateway(environment=faketime("+60s"))
    stack.wait_ready()
    started = time.monotonic()
    response = httpx.post(
        f"{stack.url}/recorded/invoke", json={"input": work(0, seconds=0.2)}, timeout=30
    )
    assert response.status_code == 200 and time.monotonic() - started < 5
    accepted = submit_all(stack, [work(i, prefix="q", seconds=3) for i in range(5)])
    wait_until(lambda: all(r["state"] == "running" for r in records(stack, list(accepted))), 10)
    figures = httpx.get(f"{stack.url}/v1/queue", timeout=5).json()
    assert (figures["in_progress"], figures["ready"]) == (5, 0)
    waiter = threading.Thread(target=wait_final, args=(stack, list(accepted)))
    waiter.start()
    waiter.join(60)
