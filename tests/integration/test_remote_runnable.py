"""LangServe's own client, RemoteRunnable, against the gateway, unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langserve import RemoteRunnable

from langscale.localredis import LocalRedis

from support import Stack


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "fake_latency": 0.02,
            "pipelines": "chat=langscale_worker.pipelines:chat,"
            "echo=pipelines_for_tests:message_echo",
        },
    ).start()
    yield stack
    stack.stop()


def test_invoke(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")
    assert chat.invoke({"question": "hello"}) == "You said: hello"


async def test_ainvoke(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")
    assert await chat.ainvoke({"question": "async"}) == "You said: async"


def test_batch(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")
    questions = [{"question": f"n{i}"} for i in range(7)]
    assert chat.batch(questions) == [f"You said: n{i}" for i in range(7)]


async def test_abatch(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")
    assert await chat.abatch([{"question": "a"}, {"question": "b"}]) == [
        "You said: a",
        "You said: b",
    ]


def test_messages_round_trip_as_langchain_objects(stack: Stack) -> None:
    """Inputs and outputs use LangServe's serializer: messages arrive as messages."""
    echo = RemoteRunnable(f"{stack.url}/echo")
    reply = echo.invoke([HumanMessage(content="hi there")])
    assert isinstance(reply, AIMessage)
    assert reply.content == "echo: hi there"


def test_input_schema(stack: Stack) -> None:
    schema = httpx.get(f"{stack.url}/chat/input_schema").json()
    assert schema["properties"]["question"]["type"] == "string"
    assert schema["required"] == ["question"]


def test_invalid_input_raises_a_clear_client_error(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")
    with pytest.raises(httpx.HTTPStatusError) as raised:
        chat.invoke({"wrong": "key"})
    assert raised.value.response.status_code == 422
    assert raised.value.response.json()["error"]["type"] == "invalid_input"
