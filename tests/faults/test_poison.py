"""Crash accounting per run: a run that kills its worker fails alone; its neighbours live."""

from __future__ import annotations

from typing import Any

from faults import submit_all, supervised, wait_final, work
from history import check


def test_a_poison_run_fails_as_worker_crashed_and_its_neighbours_succeed(
    stack_factory: Any, record_db: Any
) -> None:
    stack = stack_factory(workers=2, lease_seconds=2, worker_concurrency=10)
    with supervised(stack) as restarts:
        normal = submit_all(stack, [work(i, seconds=2) for i in range(6)])
        poison = submit_all(stack, [work(0, prefix="poison", poison=True)])
        runs = {r["run_id"]: r for r in wait_final(stack, [*normal, *poison], timeout=180)}
    (poison_id,) = poison
    assert runs[poison_id]["state"] == "failed"
    assert runs[poison_id]["error"]["type"] == "worker_crashed"
    assert [runs[run_id]["state"] for run_id in normal] == ["succeeded"] * 6
    assert len(restarts) >= 2  # it killed a worker at least twice
    verdict = check(record_db, normal)
    assert verdict.clean, verdict.summary()
