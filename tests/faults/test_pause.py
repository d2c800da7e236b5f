"""Fencing: a worker frozen past its lease (SIGSTOP, as a GC pause or a frozen node) writes
nothing after another worker took its run over."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
from faults import submit_all, wait_final, wait_running, work, worker_of
from history import check

from support import wait_until


def stale_writes(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("langscale_stale_writes_total")
    )


def test_a_paused_worker_writes_nothing_after_its_run_was_taken_over(
    stack_factory: Any, record_db: Any
) -> None:
    stack = stack_factory(workers=2, lease_seconds=2)
    accepted = submit_all(stack, [work(0, seconds=8, chunks=16)], stream=True)
    (run_id,) = accepted
    first = worker_of(stack, wait_running(stack, run_id))
    time.sleep(1.0)  # a few chunks out
    first.popen.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        # Past the lease, the other worker takes the run over as attempt 2.
        wait_until(lambda: wait_running(stack, run_id)["attempts"] == 2, 30, interval=0.2)
        time.sleep(2.0)
    finally:
        first.popen.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    (record,) = wait_final(stack, [run_id])
    assert (record["state"], record["attempts"]) == ("succeeded", 2)
    verdict = check(record_db, accepted, streamed={run_id})
    assert verdict.clean, verdict.summary()
    # The woken worker learned it no longer held the run, and Redis refused its writes.
    wait_until(lambda: stale_writes(first.http_port) >= 1, 15)
