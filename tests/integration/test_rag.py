"""Retrieval through the real stack: a real Chroma server on a free port, `langscale ingest`
as a command, the rag pipeline on a worker with a pooled connection, and an unreachable
store (a retriable failure, the worker's /readyz saying why)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.rag import ChromaServer
from langscale.localredis import LocalRedis

from support import Stack, wait_until

RAG = "rag=langscale_worker.pipelines:rag"


@pytest.fixture(scope="module")
def chroma() -> Iterator[ChromaServer]:
    with ChromaServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path, chroma: ChromaServer) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "pipelines": RAG,
            "vector_store_url": chroma.url,
            "vector_store_pool_size": 2,
            "vector_store_timeout": 2,
            "retry_backoff": 0.05,
            "max_attempts": 2,
            "rag_top_k": 2,
        },
    ).start()
    yield stack
    stack.stop()


def ingest(stack: Stack, *paths: Path, **settings: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "langscale.cli", "ingest", *map(str, paths)],
        env=stack.env(**settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def rag(stack: Stack, question: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/rag/invoke", json={"input": {"question": question}}, timeout=60)


def test_ingested_documents_are_found_by_the_rag_pipeline_through_a_pooled_connection(
    stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Redis keeps the queue.")
    (folder / "sub" / "b.md").write_text("Chroma keeps the vectors.")
    (folder / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    done = ingest(stack, folder)
    assert done.returncode == 0, done.stderr
    assert "ingested 2 chunks from 2 files" in done.stdout and "1 files skipped" in done.stdout
    assert "chunk" in done.stderr  # the progress bar
    # Fake embeddings are a hash of the text: the same text is the nearest document.
    response = rag(stack, "Chroma keeps the vectors.")
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["answer"].startswith("You said:")
    assert output["sources"][0]["text"] == "Chroma keeps the vectors."
    assert output["sources"][0]["source"].endswith("b.md")
    metrics = httpx.get(f"http://127.0.0.1:{stack.workers[0].http_port}/metrics").text
    assert "langscale_vector_store_pool_size 2.0" in metrics
    assert 'langscale_vector_store_queries_total{outcome="ok"}' in metrics
    assert "langscale_vector_store_connections_in_use 0.0" in metrics
    assert "langscale_vector_store_connections_opened_total 0.0" in metrics  # pooled


def test_ingest_of_a_path_that_does_not_exist_says_so(stack: Stack, tmp_path: Path) -> None:
    done = ingest(stack, tmp_path / "missing")
    assert done.returncode == 2 and "no file or folder" in done.stderr


def test_the_embedded_store_serves_make_run_without_a_server(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    import asyncio

    from langscale.settings import Settings
    from langscale_worker.ingest import ingest as ingest_files
    from langscale_worker.pipelines import StoreRetriever
    from langscale_worker.providers import embeddings
    from langscale_worker.vectorstore import EmbeddedStore

    (tmp_path / "one.txt").write_text("the first document")
    (tmp_path / "two.txt").write_text("the second document")
    settings = Settings(redis_url=redis_server.url, vector_store_path=tmp_path / "v.json")

    async def scenario() -> list[str]:
        report = await ingest_files(settings, [tmp_path], progress=False)
        assert report.chunks == 2 and (tmp_path / "v.json").exists()
        model = embeddings(settings)  # a worker's own store loads the file
        store = EmbeddedStore(tmp_path / "v.json", model)
        found = await StoreRetriever(store=store, embeddings=model, k=1).ainvoke(
            "the second document"
        )
        return [d.page_content for d in found]

    assert asyncio.run(scenario()) == ["the second document"]


def test_an_unreachable_store_fails_runs_as_retriable_and_the_worker_is_not_ready(
    stack: Stack, chroma: ChromaServer
) -> None:
    ready = f"http://127.0.0.1:{stack.workers[0].http_port}/readyz"
    assert httpx.get(ready).json() == {"status": "ready", "checks": {"vector_store": "ok"}}
    chroma.stop()
    response = rag(stack, "anyone there?")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "VectorStoreUnavailable" and "unreachable" in error["message"]
    run = httpx.get(f"{stack.url}/v1/runs/{error['run_id']}").json()
    assert run["attempts"] == 2  # retried, then failed
    answer = wait_until(lambda: (r := httpx.get(ready)).status_code == 503 and r, 10)
    assert "unreachable" in answer.json()["checks"]["vector_store"]
