"""LangSmith: worker runs traced with the standard LANGSMITH_* variables, against a local
receiver of what the ``langsmith`` client posts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langscale.localredis import LocalRedis

from langsmith_receiver import LangSmithReceiver
from pipelines_for_tests import TEST_PIPELINES
from support import Stack, wait_until


@pytest.fixture(scope="module")
def receiver() -> Iterator[LangSmithReceiver]:
    with LangSmithReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path, receiver: LangSmithReceiver) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "pipelines": f"{TEST_PIPELINES},flaky_once=pipelines_for_tests:flaky_once,"
            "chat_with_history=langscale_worker.pipelines:chat_with_history",
            "retry_backoff": 0.05,
        },
        environment={
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_API_KEY": "lsv2-test-key",
            "LANGSMITH_ENDPOINT": receiver.url,
            "LANGSMITH_PROJECT": "langscale-tests",
        },
    ).start()
    yield stack
    stack.stop()


def run(stack: Stack, body: dict[str, Any]) -> str:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        run_id: str = client.post("/v1/runs", json=body).json()["run_id"]
        wait_until(lambda: client.get(f"/v1/runs/{run_id}").json()["state"] == "succeeded", 30)
    return run_id


def test_a_run_is_a_langsmith_trace_whose_root_id_is_the_run_id(
    stack: Stack, receiver: LangSmithReceiver
) -> None:
    run_id = run(
        stack,
        {"pipeline": "chat_with_history", "input": {"question": "hi"}, "thread_id": "ls-1"},
    )

    def root() -> dict[str, Any] | None:
        found = receiver.runs.get(run_id)
        return found if found and found.get("end_time") else None

    trace = wait_until(root, 30)
    assert trace.get("parent_run_id") is None and trace["outputs"]
    metadata = trace["extra"]["metadata"]
    assert metadata["langscale_run_id"] == run_id
    assert metadata["langscale_tenant"] == "default"
    assert metadata["langscale_pipeline"] == "chat_with_history"
    assert metadata["langscale_attempt"] == 1
    assert metadata["thread_id"] == "ls-1" and metadata["session_id"] == "ls-1"
    # The LLM call is a child run of the same trace.
    children = [r for r in receiver.runs.values() if r.get("trace_id") == run_id]
    assert any(r.get("run_type") == "llm" for r in children)


def test_a_retried_run_shows_each_attempt_as_its_own_trace(
    stack: Stack, receiver: LangSmithReceiver
) -> None:
    run_id = run(stack, {"pipeline": "flaky_once", "input": {"text": "x"}})

    def attempts() -> list[dict[str, Any]] | None:
        roots = [
            r
            for r in receiver.roots()
            if (r.get("extra") or {}).get("metadata", {}).get("langscale_run_id") == run_id
            and r.get("end_time")
        ]
        return roots if len(roots) == 2 else None

    first, second = sorted(
        wait_until(attempts, 30), key=lambda r: r["extra"]["metadata"]["langscale_attempt"]
    )
    assert first["id"] == run_id and first.get("error")
    assert second["id"] == str(uuid.uuid5(uuid.UUID(run_id), "attempt-2"))
    assert second["extra"]["metadata"]["langscale_attempt"] == 2 and second["outputs"]
