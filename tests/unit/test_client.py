"""langscale.client's retry rules, in-process: 429 and 503 are retried after their
Retry-After (a submit keeps its Idempotency-Key), errors carry the gateway's error body.
The real-stack behaviour (waits, streams across a gateway restart) is in
tests/integration/test_clients.py."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from langscale.client import AsyncClient, Client, LangscaleError

RUN_ID = "3f2b8a4c-1d2e-4f5a-8b6c-7d8e9f0a1b00"


def gateway(answers: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return httpx.MockTransport(handle)


def error(status: int, kind: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"type": kind, "message": "m", "retry_after": 1}}
    return httpx.Response(status, json=body, headers=headers)


async def test_a_submit_is_retried_after_retry_after_with_the_same_key() -> None:
    seen: list[httpx.Request] = []
    accepted = {"run_id": RUN_ID, "state": "queued", "status_url": f"/v1/runs/{RUN_ID}"}
    answers = [
        error(429, "queue_full", {"Retry-After": "0.2"}),
        error(503, "redis_unavailable", {"Retry-After": "0"}),
        httpx.Response(202, json=accepted),
    ]
    http = httpx.AsyncClient(transport=gateway(answers, seen))
    async with AsyncClient("http://gw", http=http, api_key="k") as client:
        started = time.monotonic()
        result = await client.submit("chat", {"question": "hi"}, metadata={"user": "u"})
    assert result.run_id == RUN_ID
    assert time.monotonic() - started >= 0.2, "waited what Retry-After said"
    keys = {request.headers["idempotency-key"] for request in seen}
    assert len(seen) == 3 and len(keys) == 1, "one key: a retried submit is the same run"
    assert seen[0].headers["authorization"] == "Bearer k"
    assert json.loads(seen[0].content)["metadata"] == {"user": "u"}


async def test_retries_stop_at_max_retry_wait() -> None:
    seen: list[httpx.Request] = []
    answers = [error(503, "redis_unavailable", {"Retry-After": "5"}) for _ in range(3)]
    http = httpx.AsyncClient(transport=gateway(answers, seen))
    async with AsyncClient("http://gw", http=http, max_retry_wait=1) as client:
        with pytest.raises(LangscaleError) as raised:
            await client.get(RUN_ID)
    assert raised.value.status == 503 and raised.value.type == "redis_unavailable"
    assert len(seen) == 1, "a 5 s Retry-After is past the 1 s budget: raised at once"


def test_the_sync_client_raises_the_gateways_error() -> None:
    seen: list[httpx.Request] = []
    answers = [error(404, "run_not_found")]
    client = Client("http://gw", http=httpx.AsyncClient(transport=gateway(answers, seen)))
    with client, pytest.raises(LangscaleError) as raised:
        client.get(RUN_ID)
    assert (raised.value.status, raised.value.type, raised.value.message) == (
        404,
        "run_not_found",
        "m",
    )
    assert raised.value.details == {"retry_after": 1}


def test_an_error_that_is_not_json_still_raises() -> None:
    seen: list[httpx.Request] = []
    answers = [httpx.Response(502, text="bad gateway")]
    client = Client("http://gw", http=httpx.AsyncClient(transport=gateway(answers, seen)))
    with client, pytest.raises(LangscaleError) as raised:
        client.get(RUN_ID)
    assert raised.value.type == "http_error" and "bad gateway" in raised.value.message
