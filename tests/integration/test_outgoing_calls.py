"""Outgoing LLM calls under control, across real worker processes.

Three workers call a local OpenAI-compatible server (which records every request with its
time and status) under one shared budget of 20 requests per 2 s window.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langscale.keys import Keyspace
from langscale.localredis import LocalRedis

from support import Stack, openai_provider_settings, sync_client, wait_until

LIMIT, WINDOW = 20, 2.0  # 10 requests/s, in a window short enough for a test


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path, openai_server: str) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            **openai_provider_settings(openai_server),
            "llm_rate_limits": f"openai/test-model={LIMIT}",
            "llm_rate_window": WINDOW,
            "llm_cache_pipelines": "chat",
            "embed_batch_wait_ms": 50,
        },
    ).start(workers=3)
    # Warm up: a process's first call also opens its HTTP connection, which delays that
    # request's arrival (not its send time) into later slots; measure warm processes.
    run_all(stack, "chat", [{"question": f"warm-up {i}"} for i in range(15)])
    yield stack
    stack.stop()


def reset(server: str, **faults: Any) -> None:
    httpx.post(f"{server}/control", json={"requests": [], "fail_next": 0, "headers": {}, **faults})


def provider_requests(server: str, path: str = "chat") -> list[dict[str, Any]]:
    return [r for r in httpx.get(f"{server}/control").json()["requests"] if r["path"] == path]


def run_all(
    stack: Stack, pipeline: str, inputs: list[dict[str, Any]], stream: bool = False
) -> list[dict[str, Any]]:
    """Queue the runs at once, then wait until every one has ended."""
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        run_ids = []
        for value in inputs:
            body = {"pipeline": pipeline, "input": value, "stream": stream}
            response = client.post("/v1/runs", json=body)
            assert response.status_code == 202, response.text
            run_ids.append(response.json()["run_id"])

        def ended() -> list[dict[str, Any]] | None:
            records = [client.get(f"/v1/runs/{run_id}").json() for run_id in run_ids]
            final = {"succeeded", "failed", "cancelled"}
            return records if all(r["state"] in final for r in records) else None

        records: list[dict[str, Any]] = wait_until(ended, 60, interval=0.2)
    return records


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_the_budget_holds_across_worker_processes(
    stack: Stack, openai_server: str, redis_server: LocalRedis
) -> None:
    reset(openai_server)
    records = run_all(stack, "chat", [{"question": f"q{i}"} for i in range(50)], stream=True)
    assert all(r["state"] == "succeeded" for r in records), records
    times = [r["at"] for r in provider_requests(openai_server)]
    assert len(times) == 50
    # At most the limit in any window (plus the one-request burst), and no faster overall.
    # The budget sets send times; the server sees arrivals, which a loaded machine delays
    # by a varying few hundred ms: allow for that by counting over a slightly shorter
    # window (without the budget, all 50 would arrive within a fraction of a second).
    assert most_in_any_window(times, WINDOW - 0.3) <= LIMIT + 1
    assert max(times) - min(times) >= (50 - LIMIT - 1) * WINDOW / LIMIT
    # Runs that waited for budget say so in their event stream.
    redis = sync_client(redis_server.url)
    keyspace = Keyspace()
    waits = [
        json.loads(fields[b"d"])
        for r in records
        for _, fields in redis.xrange(keyspace.events(r["run_id"]))
        if fields[b"t"] == b"wait"
    ]
    assert waits and all(w["reason"] == "rate_limit" and w["seconds"] > 0 for w in waits)


def test_a_429_holds_off_every_worker(stack: Stack, openai_server: str) -> None:
    retry_after = 2
    reset(openai_server, fail_next=1, fail_status=429, retry_after=retry_after)
    records = run_all(stack, "chat", [{"question": f"r{i}"} for i in range(40)])
    # The one 429 was retried after the backoff: every run got its answer.
    assert all(r["state"] == "succeeded" for r in records), records
    requests = provider_requests(openai_server)
    (refused,) = [r for r in requests if r["status"] == 429]
    # Slots reserved before the 429 may still go (up to the 0.5 s lookahead); after that
    # no worker sends anything until Retry-After has passed, though work was waiting.
    quiet_from, quiet_to = refused["at"] + 0.6, refused["at"] + retry_after - 0.05
    assert not [r for r in requests if quiet_from <= r["at"] <= quiet_to]
    assert [r for r in requests if r["at"] > quiet_to]


def test_cache_hits_skip_the_provider(stack: Stack, openai_server: str) -> None:
    reset(openai_server)
    answers = []
    for _ in range(3):
        response = httpx.post(f"{stack.url}/chat/invoke", json={"input": {"question": "same"}})
        assert response.status_code == 200, response.text
        answers.append(response.json()["output"])
    assert answers == ["openai-fake says: same"] * 3
    assert len(provider_requests(openai_server)) == 1


def test_embeddings_of_concurrent_runs_share_provider_calls(
    stack: Stack, openai_server: str
) -> None:
    reset(openai_server)
    inputs = [{"texts": ["x" * (i % 7 + 1), "y" * (i % 5 + 1)]} for i in range(60)]
    records = run_all(stack, "embed", inputs)
    for value, record in zip(inputs, records, strict=True):
        assert record["state"] == "succeeded"
        assert record["output"] == [[float(len(t)), 1.0, 0.0] for t in value["texts"]]
    calls = provider_requests(openai_server, "embeddings")
    assert sum(c["n"] for c in calls) == 120
    assert len(calls) < 30  # 60 runs on 3 workers, gathered into far fewer calls
