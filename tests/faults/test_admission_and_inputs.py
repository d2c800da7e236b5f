"""Admission is a hard limit, idempotency never lies, retries stay bounded, and inputs that
could not be read back are refused at the door."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
from faults import records, wait_final, work

from support import Stack, openai_provider_settings


async def _burst(
    url: str, count: int, headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        body = {"pipeline": "recorded", "input": work(0, seconds=5)}
        return await asyncio.gather(
            *(client.post("/v1/runs", json=body, headers=headers) for _ in range(count))
        )


def test_a_burst_over_the_admission_limit_gets_at_most_the_limit_in(stack_factory: Any) -> None:
    stack: Stack = stack_factory(workers=1, admission_max_ready=10)
    stack.workers.pop().stop()  # its pipelines stay known; nothing drains the queue
    responses = asyncio.run(_burst(stack.url, 200))
    codes = Counter(r.status_code for r in responses)
    assert set(codes) == {202, 429} and codes[202] <= 10 + 1  # + at most one per gateway
    refused = [r for r in responses if r.status_code == 429]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert {r.json()["error"]["type"] for r in refused} == {"queue_full"}


def test_concurrent_requests_with_one_idempotency_key_share_one_outcome(
    stack_factory: Any,
) -> None:
    stack: Stack = stack_factory(workers=1, admission_max_ready=5)
    stack.workers.pop().stop()
    asyncio.run(_burst(stack.url, 5))  # the queue is full now
    full = asyncio.run(_burst(stack.url, 20, {"Idempotency-Key": "order-1"}))
    assert {r.status_code for r in full} == {429}  # the first one's refusal, for all
    stack.add_worker()  # the queue drains
    stack.wait_ready()
    deadline = time.monotonic() + 60
    while (replies := asyncio.run(_burst(stack.url, 20, {"Idempotency-Key": "order-2"}))) and any(
        r.status_code == 429 for r in replies
    ):
        assert time.monotonic() < deadline, "the queue never drained"
        time.sleep(1)
    run_ids = {r.json()["run_id"] for r in replies}
    assert len(run_ids) == 1  # one run, named in every reply, and it exists
    (run_id,) = run_ids
    assert records(stack, [run_id])[0]["state"] in {"queued", "running", "succeeded"}
    (record,) = wait_final(stack, [run_id])
    replay = httpx.post(
        f"{stack.url}/v1/runs",
        json={"pipeline": "recorded", "input": work(0, seconds=5)},
        headers={"Idempotency-Key": "order-2"},
    )
    # A replay after the run ended answers its state now.
    body = replay.json()
    assert (body["run_id"], body["state"]) == (run_id, record["state"])
    assert replay.headers["idempotent-replayed"] == "true"


def test_a_summarize_input_that_would_fan_out_too_far_is_refused(stack_factory: Any) -> None:
    stack: Stack = stack_factory(workers=1)
    too_long = {"text": "x " * 60_000}
    response = httpx.post(
        f"{stack.url}/v1/runs", json={"pipeline": "summarize", "input": too_long}, timeout=10
    )
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["path"] == "$.input.text"


def test_a_providers_retry_after_is_capped_and_an_unreadable_one_ignored(
    stack_factory: Any, openai_server: str
) -> None:
    stack: Stack = stack_factory(
        workers=1,
        **openai_provider_settings(openai_server),
        retry_backoff=0.1,
        retry_backoff_max=1,
        llm_rate_block_max=1,
        llm_rate_429_retries=0,
    )
    for retry_after in (3600, "soon"):
        httpx.post(
            f"{openai_server}/control",
            json={"requests": [], "fail_next": 2, "fail_status": 429, "retry_after": retry_after},
        )
        started = time.monotonic()
        response = httpx.post(
            f"{stack.url}/chat/invoke", json={"input": {"question": "hi"}}, timeout=60
        )
        assert response.status_code == 200, response.text  # retried, not crashed, not lost
        assert time.monotonic() - started < 20  # not after an hour
        run_id = response.json()["metadata"]["run_id"]
        assert records(stack, [run_id])[0]["attempts"] >= 2
