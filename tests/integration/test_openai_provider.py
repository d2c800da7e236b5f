"""The ``openai`` provider over the real protocol, against a local compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from langscale.localredis import LocalRedis

from support import Stack, openai_provider_settings


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path, openai_server: str) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            **openai_provider_settings(openai_server),
        },
    ).start()
    yield stack
    stack.stop()


def test_chat_goes_through_the_openai_protocol(stack: Stack, openai_server: str) -> None:
    response = httpx.post(f"{stack.url}/chat/invoke", json={"input": {"question": "hey"}})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "openai-fake says: hey"
    requests = httpx.get(f"{openai_server}/control").json()["requests"]
    assert {"path": "chat", "model": "test-model"}.items() <= requests[-1].items()


def test_embeddings_go_through_the_openai_protocol(stack: Stack, openai_server: str) -> None:
    response = httpx.post(f"{stack.url}/embed/invoke", json={"input": {"texts": ["ab", "c"]}})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == [[2.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    requests = httpx.get(f"{openai_server}/control").json()["requests"]
    assert requests[-1] == {"path": "embeddings", "model": "test-embedder", "n": 2}


def test_provider_error_fails_the_run_with_its_type(stack: Stack, openai_server: str) -> None:
    httpx.post(f"{openai_server}/control", json={"fail_next": 1, "fail_status": 400})
    response = httpx.post(f"{stack.url}/chat/invoke", json={"input": {"question": "bad"}})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "OpenAIInvalidRequestError"  # langchain-openai's wrapper of 400
    assert "injected failure" in error["message"]
