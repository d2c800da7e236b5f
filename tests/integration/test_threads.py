"""Threads through the real stack (a gateway, two worker processes, a real Redis): a
thread's runs never overlap, each multitask strategy leaves the chat history exactly as it
promises, and the bad inputs of threads get their 4xx."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable

from langscale.client import AsyncClient, Client, LangscaleError
from langscale.localredis import LocalRedis

from support import Stack, wait_until

KEYS = {"a": "thread-key-a", "b": "thread-key-b"}
THREADS = 5
MESSAGES = 50  # over the threads, sent at once (each thread's at random moments)
LATENCY = 0.3  # of the fake model: long enough for messages to arrive mid-run


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "fake_latency": LATENCY,
            "auth_enabled": "true",
            "api_keys": f"{sha(KEYS['a'])}:a,{sha(KEYS['b'])}:b",
            "redis_partitions": 4,
        },
    )
    stack.start(workers=2)
    yield stack
    stack.stop()


def headers(who: str = "a") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest.fixture
def a(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers=headers("a"), timeout=30) as client:
        yield client


def turn(question: str) -> list[tuple[str, str]]:
    return [("human", question), ("ai", f"You said: {question}")]


async def conversation(stack: Stack, strategy: str, seed: int) -> dict[str, Any]:
    """Send MESSAGES messages over THREADS threads at once; wait until every accepted run
    ended; return, per thread, its runs (in the thread's order) and its history."""
    rng = random.Random(seed)
    prefix = f"{strategy}-{seed}"
    async with httpx.AsyncClient(base_url=stack.url, headers=headers(), timeout=60) as client:

        async def send(thread: str, question: str, delay: float) -> tuple[str, int]:
            await asyncio.sleep(delay)
            response = await client.post(
                "/v1/runs",
                json={
                    "pipeline": "chat_with_history",
                    "input": {"question": question},
                    "thread_id": thread,
                    "multitask_strategy": strategy,
                },
            )
            if response.status_code == 409:
                assert response.json()["error"]["type"] == "thread_busy"
            else:
                assert response.status_code == 202, response.text
                assert response.json()["thread_id"] == thread
            return question, response.status_code

        sends = [
            send(f"{prefix}-t{m % THREADS}", f"{prefix} m{m}", rng.uniform(0, 2.5))
            for m in range(MESSAGES)
        ]
        answers = await asyncio.gather(*sends)

        async def settled(thread: str) -> dict[str, Any] | None:
            view = (await client.get(f"/v1/threads/{thread}")).json()
            return view if view["state"] == "idle" else None

        threads = {}
        for t in range(THREADS):
            thread = f"{prefix}-t{t}"
            for _ in range(600):
                view = await settled(thread)
                if view:
                    break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError(f"thread {thread} still busy")
            history = (await client.get(f"/v1/threads/{thread}/history")).json()["messages"]
            runs = []
            for summary in view["runs"]:
                record = (await client.get(f"/v1/runs/{summary['run_id']}")).json()
                runs.append(record)
            threads[thread] = {"view": view, "runs": runs, "history": history}
    return {"answers": answers, "threads": threads}


def check(strategy: str, result: dict[str, Any]) -> dict[str, int]:
    """The promise of each strategy, message by message; returns the figures."""
    figures = {"accepted": 0, "rejected": 0, "succeeded": 0, "cancelled": 0, "lost": 0}
    figures["duplicated"] = 0
    figures["interrupted_mid_run"] = 0
    figures["partial_answers"] = 0
    accepted = [q for q, status in result["answers"] if status == 202]
    figures["accepted"] = len(accepted)
    figures["rejected"] = len(result["answers"]) - len(accepted)
    for thread in result["threads"].values():
        messages = [
            (m["message"]["type"], m["message"]["data"]["content"]) for m in thread["history"]
        ]
        writers = [m["run_id"] for m in thread["history"]]
        assert len(thread["runs"]) == len(thread["view"]["runs"])
        expected_at = 0
        windows = []
        for record in thread["runs"]:
            run_id = record["run_id"]
            mine = [msg for msg, writer in zip(messages, writers, strict=True) if writer == run_id]
            if record["state"] == "succeeded":
                figures["succeeded"] += 1
                question = record["output"].removeprefix("You said: ")
                expected = turn(question)
                if mine != expected:
                    figures["lost" if len(mine) < 2 else "duplicated"] += 1
                assert mine == expected, (record, mine)
            else:
                assert record["state"] == "cancelled", record
                figures["cancelled"] += 1
                kind = record["error"]["type"]
                assert strategy in ("interrupt", "rollback") and kind == (
                    "interrupted" if strategy == "interrupt" else "rolled_back"
                )
                if strategy == "rollback":
                    assert mine == [], (record, mine)  # a rollback drops all it wrote
                else:  # an interrupted run keeps its question and what it had answered
                    kinds = [kind for kind, _ in mine]
                    assert kinds in ([], ["human"], ["human", "ai"]), (record, mine)
                    if len(mine) == 2:  # a non-empty beginning of the answer to its question
                        answer = turn(mine[0][1])[1][1]
                        assert mine[1][1] and answer.startswith(mine[1][1]), (record, mine)
                    figures["interrupted_mid_run"] += len(mine) > 0
                    figures["partial_answers"] += len(mine) == 2
            # The thread's messages are its runs' writes, run after run, in the runs' order.
            assert messages[expected_at : expected_at + len(mine)] == mine
            expected_at += len(mine)
            if record["started_at"] is not None and record["finished_at"] is not None:
                windows.append((record["started_at"], record["finished_at"]))
        assert expected_at == len(messages)  # nothing written by anyone else
        windows.sort()
        for (_, end), (start, _) in itertools.pairwise(windows):
            assert start >= end, "two runs of one thread overlapped"
    if strategy in ("enqueue", "reject"):
        assert figures["succeeded"] == figures["accepted"]
    if strategy == "enqueue":
        assert figures["accepted"] == MESSAGES
    return figures


@pytest.mark.parametrize("strategy", ["enqueue", "reject", "interrupt", "rollback"])
def test_fifty_concurrent_messages_on_five_threads_leave_each_history_as_the_strategy_promises(
    stack: Stack, strategy: str
) -> None:
    result = asyncio.run(conversation(stack, strategy, seed=15))
    figures = check(strategy, result)
    print(f"\n{strategy}: {json.dumps(figures)}")
    assert figures["lost"] == 0 and figures["duplicated"] == 0


def first_chunk(client: httpx.Client, run_id: str) -> None:
    """Wait until the run streamed its first chunk (the model is answering)."""
    with client.stream("GET", f"/v1/runs/{run_id}/stream", timeout=10) as events:
        for line in events.iter_lines():
            if line == "event: data":
                return
    raise AssertionError(f"run {run_id} ended without a chunk")


def test_an_interrupted_run_is_stopped_and_keeps_its_question_and_partial_answer(
    a: httpx.Client,
) -> None:
    long = " ".join(f"w{i}" for i in range(1000))  # the fake answers it in ~5 s of tokens
    first = a.post(
        "/v1/runs",
        json={
            "pipeline": "chat_with_history",
            "input": {"question": long},
            "thread_id": "iq",
            "stream": True,
        },
    ).json()["run_id"]
    first_chunk(a, first)
    second = a.post(
        "/v1/runs",
        json={
            "pipeline": "chat_with_history",
            "input": {"question": "next"},
            "thread_id": "iq",
            "multitask_strategy": "interrupt",
        },
    ).json()
    assert second["cancelled_run_ids"] == [first]
    wait_until(lambda: a.get("/v1/threads/iq").json()["state"] == "idle", 20)
    entries = a.get("/v1/threads/iq/history").json()["messages"]
    history = [(m["message"]["type"], m["message"]["data"]["content"]) for m in entries]
    assert [(m["message"]["type"], m["run_id"]) for m in entries] == [
        ("human", first),
        ("ai", first),
        ("human", second["run_id"]),
        ("ai", second["run_id"]),
    ]
    assert history[0] == ("human", long) and history[2:] == turn("next")
    partial = history[1][1]
    assert partial and f"You said: {long}".startswith(partial) and partial != f"You said: {long}"
    assert entries[1]["message"]["data"]["response_metadata"] == {
        "langscale": {"interrupted": True}
    }
    assert a.get(f"/v1/runs/{first}").json()["error"]["type"] == "interrupted"


def test_remote_runnable_with_a_session_id_is_a_thread(stack: Stack, a: httpx.Client) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat_with_history", headers=headers("a"))
    config = {"configurable": {"session_id": "rr-session"}}
    assert chat.invoke({"question": "one"}, config=config) == "You said: one"
    assert chat.invoke({"question": "two"}, config=config) == "You said: two"
    view = a.get("/v1/threads/rr-session").json()
    assert view["run_count"] == 2 and view["messages"] == 4


def test_the_client_names_a_thread_and_sees_what_its_rollback_cancelled(stack: Stack) -> None:
    with Client(stack.url, api_key=KEYS["a"]) as langscale:
        earlier = [
            langscale.submit("chat", {"question": q}, thread_id="by-client") for q in ("1", "2")
        ]
        last = langscale.submit(
            "chat", {"question": "3"}, thread_id="by-client", multitask_strategy="rollback"
        )
        assert [r.thread_id for r in [*earlier, last]] == ["by-client"] * 3
        assert earlier[0].cancelled_run_ids == []
        assert langscale.result(last.run_id, timeout=10) == "You said: 3"
        # The second waited behind the first (0.3 s of model each): it had not ended.
        assert earlier[1].run_id in (last.cancelled_run_ids or [])
        for run in earlier:
            cancelled = run.run_id in (last.cancelled_run_ids or [])
            state = langscale.get(run.run_id).state.value
            assert state == ("cancelled" if cancelled else "succeeded")


def test_the_client_reads_lists_and_deletes_threads(stack: Stack) -> None:
    with Client(stack.url, api_key=KEYS["a"]) as langscale:
        run = langscale.submit("chat_with_history", {"question": "hi"}, thread_id="read-me")
        assert langscale.result(run.run_id, timeout=20) == "You said: hi"
        thread = langscale.get_thread("read-me")
        assert (thread.state, thread.pending_run_ids, thread.messages) == ("idle", [], 2)
        assert [r.run_id for r in thread.runs] == [run.run_id]
        history = langscale.thread_history("read-me")
        assert [m.message["data"]["content"] for m in history.messages] == ["hi", "You said: hi"]
        assert {m.run_id for m in history.messages} == {run.run_id}
        assert "read-me" in {t.thread_id for t in langscale.iter_threads(limit=2)}
        page = langscale.list_threads(limit=1)
        assert len(page.threads) == 1 and page.next_cursor is not None
        langscale.delete_thread("read-me")
        with pytest.raises(LangscaleError) as missing:
            langscale.get_thread("read-me")
        assert (missing.value.status, missing.value.type) == (404, "thread_not_found")

    async def in_async() -> None:
        async with AsyncClient(stack.url, api_key=KEYS["a"]) as client:
            run = await client.submit("chat_with_history", {"question": "yo"}, thread_id="ar")
            await client.wait(run.run_id, timeout=20)
            assert (await client.get_thread("ar")).run_count == 1
            assert len((await client.thread_history("ar")).messages) == 2
            assert "ar" in {t.thread_id async for t in client.iter_threads()}
            assert (await client.list_threads(limit=100)).threads
            await client.delete_thread("ar")
            with pytest.raises(LangscaleError):
                await client.thread_history("ar")

    asyncio.run(in_async())


# --- bad input ----------------------------------------------------------------------------


def test_another_tenants_thread_is_not_found(stack: Stack, a: httpx.Client) -> None:
    run = a.post(
        "/v1/runs",
        json={"pipeline": "chat", "input": {"question": "x"}, "thread_id": "private"},
    )
    assert run.status_code == 202
    with httpx.Client(base_url=stack.url, headers=headers("b")) as b:
        for path in ("/v1/threads/private", "/v1/threads/private/history"):
            response = b.get(path)
            assert response.status_code == 404 and response.json()["error"]["type"] == (
                "thread_not_found"
            )
    assert a.get("/v1/threads/never-seen").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"thread_id": "has space"},
        {"thread_id": ""},
        {"thread_id": "x" * 129},
        {"config": {"configurable": {"session_id": 42}}},
        {"config": {"configurable": {"session_id": "../etc"}}},
    ],
)
def test_a_thread_id_that_is_not_an_id_is_422(a: httpx.Client, body: dict[str, Any]) -> None:
    response = a.post("/v1/runs", json={"pipeline": "chat", "input": {"question": "x"}, **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_thread_id"
    assert a.get("/v1/threads/has%20space").json()["error"]["type"] == "invalid_thread_id"


def test_an_unknown_strategy_is_422_listing_the_four(a: httpx.Client, stack: Stack) -> None:
    body = {"pipeline": "chat", "input": {"question": "x"}, "thread_id": "s"}
    response = a.post("/v1/runs", json={**body, "multitask_strategy": "queue"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_multitask_strategy"
    assert error["allowed"] == ["enqueue", "reject", "interrupt", "rollback"]
    invoke = a.post(
        "/chat/invoke?multitask_strategy=later",
        json={"input": {"question": "x"}, "config": {"configurable": {"session_id": "s"}}},
    )
    assert invoke.status_code == 422
    assert invoke.json()["error"]["allowed"] == ["enqueue", "reject", "interrupt", "rollback"]


def test_a_pipeline_with_a_history_needs_a_thread(a: httpx.Client) -> None:
    for response in (
        a.post("/v1/runs", json={"pipeline": "chat_with_history", "input": {"question": "x"}}),
        a.post("/chat_with_history/invoke", json={"input": {"question": "x"}}),
        a.post("/chat_with_history/batch", json={"inputs": [{"question": "x"}]}),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["type"] == "thread_required"


def test_thread_ids_that_disagree_or_a_strategy_without_a_thread_are_422(
    a: httpx.Client,
) -> None:
    mismatch = a.post(
        "/v1/runs",
        json={
            "pipeline": "chat",
            "input": {"question": "x"},
            "thread_id": "one",
            "config": {"configurable": {"session_id": "two"}},
        },
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["type"] == "thread_id_mismatch"
    alone = a.post(
        "/v1/runs",
        json={"pipeline": "chat", "input": {"question": "x"}, "multitask_strategy": "reject"},
    )
    assert alone.status_code == 422


def test_rollback_of_a_run_that_already_ended_rolls_back_nothing(a: httpx.Client) -> None:
    body = {"pipeline": "chat_with_history", "input": {"question": "q"}, "thread_id": "rb"}
    first = a.post("/v1/runs", json=body).json()["run_id"]
    wait_until(lambda: a.get(f"/v1/runs/{first}").json()["state"] == "succeeded", 10)
    again = a.post("/v1/runs", json={**body, "multitask_strategy": "rollback"})
    assert again.status_code == 202
    assert again.json()["cancelled_run_ids"] == []
    wait_until(lambda: a.get("/v1/threads/rb").json()["state"] == "idle", 10)
    assert a.get("/v1/threads/rb").json()["messages"] == 4  # both turns kept


def test_an_idempotency_key_holds_its_thread_and_strategy(a: httpx.Client) -> None:
    body = {"pipeline": "chat_with_history", "input": {"question": "once"}, "thread_id": "idem"}
    key = {"Idempotency-Key": "thread-order-1"}
    first = a.post("/v1/runs", json=body, headers=key)
    again = a.post("/v1/runs", json={**body, "multitask_strategy": "enqueue"}, headers=key)
    assert first.status_code == again.status_code == 202  # enqueue is the default
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    others = [
        {**body, "multitask_strategy": "interrupt"},
        {**body, "multitask_strategy": "rollback"},
        # other threads: some in the thread's partition, some not (4 partitions)
        *({**body, "thread_id": f"idem-{n}"} for n in range(6)),
        {"pipeline": "chat", "input": {"question": "once"}},  # no thread
    ]
    for other in others:
        response = a.post("/v1/runs", json=other, headers=key)
        assert response.status_code == 409, (other, response.text)
        error = response.json()["error"]
        assert error["type"] == "idempotency_key_reused" and error["run_id"], other
    # A key used first without a thread holds against a thread's request too.
    alone = a.post("/v1/runs", json=others[-1], headers={"Idempotency-Key": "thread-order-2"})
    assert alone.status_code == 202
    for thread in ("idem", *(f"idem-{n}" for n in range(6))):
        response = a.post(
            "/v1/runs",
            json={**body, "thread_id": thread},
            headers={"Idempotency-Key": "thread-order-2"},
        )
        assert response.status_code == 409, (thread, response.text)


def test_deleting_an_ended_threads_run_removes_its_turns(a: httpx.Client) -> None:
    runs = []
    for question in ("keep me", "forget me"):
        body = {"pipeline": "chat_with_history", "input": {"question": question}}
        runs.append(a.post("/v1/runs", json={**body, "thread_id": "del"}).json()["run_id"])
    wait_until(lambda: a.get("/v1/threads/del").json()["state"] == "idle", 20)
    assert a.delete(f"/v1/runs/{runs[1]}").status_code == 204
    history = a.get("/v1/threads/del/history").json()["messages"]
    messages = [(m["message"]["type"], m["message"]["data"]["content"]) for m in history]
    assert messages == turn("keep me")
    assert [r["run_id"] for r in a.get("/v1/threads/del").json()["runs"]] == runs[:1]


def test_a_tenants_threads_are_listed_page_by_page_and_deleted_when_idle(
    stack: Stack, a: httpx.Client
) -> None:
    names = [f"listed-{n}" for n in range(5)]
    run_ids = {}
    for name in names:
        body = {"pipeline": "chat_with_history", "input": {"question": name}, "thread_id": name}
        run_ids[name] = a.post("/v1/runs", json=body).json()["run_id"]
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = a.get("/v1/threads", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200 and len(page.json()["threads"]) <= 3
        seen += page.json()["threads"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    ids = [t["thread_id"] for t in seen]
    assert len(ids) == len(set(ids)) and set(names) <= set(ids)
    created = [t["created_at"] for t in seen]
    assert created == sorted(created, reverse=True)
    with httpx.Client(base_url=stack.url, headers=headers("b"), timeout=30) as b:
        assert not set(names) & {t["thread_id"] for t in b.get("/v1/threads").json()["threads"]}
        assert b.delete("/v1/threads/listed-0").status_code == 404  # another tenant's
    # Deleting: refused while a run has not ended, then the history, log and state go.
    slow = " ".join(f"w{i}" for i in range(400))  # ~2 s of the fake model's tokens
    busy = a.post(
        "/v1/runs",
        json={
            "pipeline": "chat_with_history",
            "input": {"question": slow},
            "thread_id": "busy-del",
        },
    ).json()["run_id"]
    refused = a.delete("/v1/threads/busy-del")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["type"], error["run_id"]) == ("thread_busy", busy)
    wait_until(lambda: a.get("/v1/threads/busy-del").json()["state"] == "idle", 20)
    assert a.delete("/v1/threads/busy-del").status_code == 204
    assert a.get("/v1/threads/busy-del").status_code == 404
    assert a.get("/v1/threads/busy-del/history").status_code == 404
    assert a.get(f"/v1/runs/{busy}").json()["state"] == "succeeded"  # runs are not deleted
    assert a.delete("/v1/threads/busy-del").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "params", "error"),
    [
        ("GET", "/v1/threads", {"limit": 0}, "invalid_request"),
        ("GET", "/v1/threads", {"limit": 101}, "invalid_request"),
        ("GET", "/v1/threads", {"cursor": "not-a-cursor"}, "invalid_cursor"),
        ("DELETE", "/v1/threads/bad%20id", {}, "invalid_thread_id"),
    ],
)
def test_bad_thread_listings_and_deletes_are_422(
    a: httpx.Client, method: str, path: str, params: dict[str, Any], error: str
) -> None:
    response = a.request(method, path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == error
