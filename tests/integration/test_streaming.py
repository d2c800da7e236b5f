"""Streaming through the queue, and cancellation across it, with real processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from httpx_sse import aconnect_sse, connect_sse
from langserve import RemoteRunnable

from langscale import keys
from langscale.localredis import LocalRedis

from pipelines_for_tests import TEST_PIPELINES
from support import Stack, sync_client, wait_until

Event = tuple[str, str, Any]  # (id, type, data)


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "pipelines": TEST_PIPELINES,
            "fake_latency": 0.05,
            "fake_tokens_per_second": 100,
            "pipeline_heartbeat": 1,
            "lease_seconds": 2,
        },
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def db(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    with sync_client(redis_server.url, decode_responses=True) as connection:
        yield connection


def submit(client: httpx.Client, pipeline: str, value: Any, **extra: Any) -> str:
    response = client.post("/v1/runs", json={"pipeline": pipeline, "input": value, **extra})
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def read_stream(client: httpx.Client, run_id: str, last_event_id: str | None = None) -> list[Event]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    with connect_sse(client, "GET", f"/v1/runs/{run_id}/stream", headers=headers) as source:
        for sse in source.iter_sse():
            events.append((sse.id, sse.event, json.loads(sse.data)))
    return events


def tokens(question: str) -> list[str]:
    words = f"You said: {question}".split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def state_of(client: httpx.Client, run_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/runs/{run_id}").json())


# --- streaming -------------------------------------------------------------------------


def test_remote_runnable_stream_receives_the_tokens_in_order(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")
    received = [chunk for chunk in chat.stream({"question": "one two three"}) if chunk]
    assert received == tokens("one two three")


async def test_fifty_concurrent_streams_each_get_exactly_their_own_tokens(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")

    async def collect(i: int) -> list[str]:
        return [c async for c in chat.astream({"question": f"stream {i} words"}) if c]

    results = await asyncio.gather(*(collect(i) for i in range(50)))
    assert results == [tokens(f"stream {i} words") for i in range(50)]


def test_a_streamed_run_publishes_states_chunks_and_its_output(client: httpx.Client) -> None:
    run_id = submit(client, "chat", {"question": "a b"}, stream=True)
    events = read_stream(client, run_id)
    kinds = [kind for _, kind, _ in events]
    assert kinds[:2] == ["state", "state"] and kinds[-1] == "end"
    assert [data["state"] for _, kind, data in events if kind == "state"] == ["queued", "running"]
    # LangChain's astream of this chain ends with an empty chunk, relayed as is.
    assert [data for _, kind, data in events if kind == "data" and data] == tokens("a b")
    assert events[-1][2] == {"state": "succeeded", "output": "You said: a b", "error": None}
    ids = [event_id for event_id, _, _ in events]
    assert all(ids) and len(set(ids)) == len(ids)


def test_a_run_nobody_streamed_can_still_be_followed_to_its_end(client: httpx.Client) -> None:
    run_id = submit(client, "chat", {"question": "quiet"})
    wait_until(lambda: state_of(client, run_id)["state"] == "succeeded", 10)
    events = read_stream(client, run_id)
    assert events == [
        ("1", "end", {"state": "succeeded", "output": "You said: quiet", "error": None})
    ]
    slow = submit(client, "sleepy", {"seconds": 0.5})
    events = read_stream(client, slow)  # followed while queued or running: from then on
    assert events[0][1] == "state" and events[-1][1] == "end"


def test_resume_with_last_event_id_gives_exactly_the_rest(client: httpx.Client) -> None:
    run_id = submit(client, "chat", {"question": " ".join(f"w{i}" for i in range(20))}, stream=True)
    everything = read_stream(client, run_id)
    for cut in (1, len(everything) // 2, len(everything) - 2):
        assert (
            read_stream(client, run_id, last_event_id=everything[cut][0]) == everything[cut + 1 :]
        )


def test_resume_while_the_run_is_still_streaming(client: httpx.Client) -> None:
    run_id = submit(client, "chat", {"question": " ".join(f"w{i}" for i in range(60))}, stream=True)
    seen: list[Event] = []
    with connect_sse(client, "GET", f"/v1/runs/{run_id}/stream") as source:
        for sse in source.iter_sse():  # leave after a few chunks
            seen.append((sse.id, sse.event, json.loads(sse.data)))
            if len(seen) == 6:
                break
    rest = read_stream(client, run_id, last_event_id=seen[-1][0])
    assert [d for _, k, d in seen + rest if k == "data" and d] == tokens(
        " ".join(f"w{i}" for i in range(60))
    )
    assert rest[-1][1] == "end"


async def test_several_clients_follow_one_run(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        response = await client.post(
            "/v1/runs",
            json={"pipeline": "chat", "input": {"question": "x y z w"}, "stream": True},
        )
        run_id = response.json()["run_id"]

        async def follow() -> list[Event]:
            events: list[Event] = []
            async with aconnect_sse(client, "GET", f"/v1/runs/{run_id}/stream") as source:
                async for sse in source.aiter_sse():
                    events.append((sse.id, sse.event, json.loads(sse.data)))
            return events

        followers = await asyncio.gather(*(follow() for _ in range(5)))
    assert all(f == followers[0] for f in followers)
    assert followers[0][-1][2]["output"] == "You said: x y z w"


def test_stream_events_relays_astream_events(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in chat.astream_events({"question": "ev"}, version="v2")]

    events = asyncio.run(collect())
    names = {e["event"] for e in events}
    assert {"on_chain_start", "on_chat_model_stream", "on_chain_end"} <= names
    streamed = [e["data"]["chunk"].content for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(streamed) == "You said: ev"


def test_stream_of_a_failing_run_ends_with_an_error_event(stack: Stack) -> None:
    failing = RemoteRunnable(f"{stack.url}/failing")
    with pytest.raises(httpx.HTTPStatusError, match="cannot handle 'x'"):
        list(failing.stream({"text": "x"}))


def test_stream_of_an_unknown_run_is_404_and_a_bad_last_event_id_422(
    client: httpx.Client,
) -> None:
    response = client.get("/v1/runs/6b1c7a52-3c1e-4d1f-9a63-3f0f8d6f2f7e/stream")
    assert response.status_code == 404
    run_id = submit(client, "chat", {"question": "x"})
    response = client.get(f"/v1/runs/{run_id}/stream", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_last_event_id"


# --- cancellation ----------------------------------------------------------------------


def test_cancel_a_running_run_stops_it_on_the_worker(client: httpx.Client) -> None:
    run_id = submit(client, "sleepy", {"seconds": 30})
    wait_until(lambda: state_of(client, run_id)["state"] == "running", 15)
    response = client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["error"]["type"] == "cancelled"
    events = read_stream(client, run_id)
    assert events[-1][1:] == (
        "end",
        {
            "state": "cancelled",
            "output": None,
            "error": {"type": "cancelled", "message": "cancelled by the client"},
        },
    )
    # The worker stopped the task: its slot is free and nothing overwrites the state.
    time.sleep(0.5)
    assert state_of(client, run_id)["state"] == "cancelled"


def test_cancel_a_finished_run_is_409(client: httpx.Client) -> None:
    response = client.post("/chat/invoke", json={"input": {"question": "done"}})
    run_id = response.json()["metadata"]["run_id"]
    response = client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "type": "run_already_finished",
        "message": f"run {run_id} already ended: succeeded",
        "state": "succeeded",
    }
    assert client.post("/v1/runs/6b1c7a52-3c1e-4d1f-9a63-3f0f8d6f2f7e/cancel").status_code == 404
    assert client.post("/v1/runs/not-a-run/cancel").status_code == 422


# --- disconnect policy -----------------------------------------------------------------


def run_created_since(db: redis.Redis, pipeline: str, since: float) -> str | None:
    """The id of a run of ``pipeline`` created after ``since`` (this module's Redis)."""
    for key in db.scan_iter(f"*}}:{keys.RUN}:*"):
        run = db.hgetall(key)
        if run.get("pipeline") == pipeline and int(run["created"]) >= since * 1000:
            return str(key).rsplit(":", 1)[1]
    return None


@pytest.mark.parametrize(("policy", "final"), [("cancel", "cancelled"), ("continue", "succeeded")])
def test_invoke_disconnect_policy(
    stack: Stack, client: httpx.Client, db: redis.Redis, policy: str, final: str
) -> None:
    since = time.time()
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        httpx.post(
            f"{stack.url}/sleepy/invoke",
            params={"on_disconnect": policy},
            json={"input": {"seconds": 1.5}},
            timeout=0.5,
        )
    run_id = wait_until(lambda: run_created_since(db, "sleepy", since), 5)
    ended = wait_until(
        lambda: (s := state_of(client, run_id)["state"]) in {"cancelled", "succeeded"} and s, 10
    )
    assert ended == final


@pytest.mark.parametrize(("policy", "final"), [("cancel", "cancelled"), ("continue", "succeeded")])
def test_stream_disconnect_policy(
    stack: Stack, client: httpx.Client, policy: str, final: str
) -> None:
    with connect_sse(
        client,
        "POST",
        f"/sleepy/stream?on_disconnect={policy}",
        json={"input": {"seconds": 1.5}},
    ) as source:
        first = next(iter(source.iter_sse()))
        assert first.event == "metadata"
        run_id = json.loads(first.data)["run_id"]
    ended = wait_until(
        lambda: (s := state_of(client, run_id)["state"]) in {"cancelled", "succeeded"} and s, 10
    )
    assert ended == final


# --- retries are announced in the stream ------------------------------------------------


def test_a_retry_mid_stream_is_signalled_before_the_new_attempts_chunks(
    stack: Stack, client: httpx.Client
) -> None:
    # A slow stream on one worker; the other takes the run over when the first one dies.
    question = " ".join(f"t{i}" for i in range(40))
    first = stack.workers[0]
    second = stack.add_worker()
    stack.wait_ready()
    run_id = None
    try:
        run_id = submit(client, "chat", {"question": question}, stream=True)
        seen: list[Event] = []
        with connect_sse(client, "GET", f"/v1/runs/{run_id}/stream") as source:
            for sse in source.iter_sse():
                seen.append((sse.id, sse.event, json.loads(sse.data)))
                if sse.event == "data" and len(seen) == 5:
                    # Kill the worker running it; its lease lapses and the other takes it.
                    pid = int(state_of(client, run_id)["worker"].split(":")[1])
                    (runner,) = [w for w in (first, second) if w.pid == pid]
                    runner.stop(signal.SIGKILL)
                    break
        rest = read_stream(client, run_id, last_event_id=seen[-1][0])
    finally:
        stack.workers[:] = [w for w in stack.workers if w.alive()] or [stack.add_worker()]
    events = seen + rest
    kinds = [kind for _, kind, _ in events]
    retry_at = kinds.index("retry")
    assert events[retry_at][2] == {"attempt": 2}
    assert "data" in kinds[:retry_at]
    after = [data for _, kind, data in events[retry_at:] if kind == "data" and data]
    assert after == tokens(question)  # the new attempt starts over, announced
    assert events[-1][2]["state"] == "succeeded"
    assert state_of(client, run_id)["attempts"] == 2
