"""Vector stores for retrieval: a Chroma server over HTTP, or an embedded store for local use.

**Chroma** (``LANGSCALE_VECTOR_STORE_URL=http://host:8000``): a collection of a Chroma
server (``chroma run``), through its HTTP API. Each worker process keeps one pool of
``LANGSCALE_VECTOR_STORE_POOL_SIZE`` keep-alive connections shared by all its runs (a run
waits for a free one; ``0`` opens a new connection per query, the baseline the benchmark
compares with); pool size, connections in use and the wait for one are worker metrics. We
speak the server's HTTP API with the worker's own ``httpx`` rather than the ``chromadb``
package: that package brings onnxruntime, tokenizers and more (~200 MB) into the worker
image, and its async client keeps one connection pool per event loop for the whole process,
whatever the settings of the client asking, so neither a pool size nor a connection per
query could be chosen. An unreachable or failing store raises
:class:`VectorStoreUnavailable`, a retriable error (the run is retried, then fails with that
type), and the worker's ``/readyz`` says why.

**Embedded** (no URL, the ``make run`` default): LangChain's ``InMemoryVectorStore`` in each
worker process, loaded from the JSON file ``langscale ingest`` writes
(``LANGSCALE_VECTOR_STORE_PATH``) and reloaded when that file changes: nothing to install
or run, fine for a demo's thousands of chunks, not shared memory between workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from langscale import metrics
from langscale.settings import Settings
from langscale_worker.retries import RetriableError

logger = logging.getLogger(__name__)

API = "/api/v2/tenants/default_tenant/databases/default_database"


class VectorStoreUnavailable(RetriableError):
    """The vector store did not answer, or answered with a server error: retry later."""


class VectorStore(Protocol):
    async def query(self, embedding: list[float], k: int) -> list[Document]: ...

    async def add(
        self, ids: Sequence[str], documents: Sequence[Document], embeddings: Embeddings
    ) -> None: ...

    async def check(self) -> str | None:
        """None when the store answers, else why not."""

    async def close(self) -> None: ...


class ChromaStore:
    """One collection of a Chroma server, through a per-process connection pool."""

    def __init__(self, url: str, collection: str, pool_size: int, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.collection = collection
        self.pool_size = pool_size
        self.timeout = timeout
        self._collection_id: str | None = None
        self._resolving = asyncio.Lock()  # one lookup of the collection, not one per run
        self._pool: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(pool_size) if pool_size else None
        metrics.VECTOR_POOL_SIZE.set(pool_size)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[httpx.AsyncClient]:
        """A pooled connection (waiting for a free one), or, unpooled, a new connection
        (one client that keeps none alive: each request connects, nothing else is rebuilt)."""
        if self._slots is None:
            if self._pool is None:
                self._pool = httpx.AsyncClient(
                    base_url=self.url,
                    timeout=self.timeout,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
                )
            metrics.VECTOR_CONNECTIONS_OPENED.inc()
            metrics.VECTOR_IN_USE.inc()
            try:
                yield self._pool
            finally:
                metrics.VECTOR_IN_USE.dec()
            return
        started = time.perf_counter()
        async with self._slots:
            metrics.VECTOR_POOL_WAIT.observe(time.perf_counter() - started)
            if self._pool is None:
                self._pool = httpx.AsyncClient(
                    base_url=self.url,
                    timeout=self.timeout,
                    limits=httpx.Limits(
                        max_connections=self.pool_size, max_keepalive_connections=self.pool_size
                    ),
                )
            metrics.VECTOR_IN_USE.inc()
            try:
                yield self._pool
            finally:
                metrics.VECTOR_IN_USE.dec()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self._connection() as client:
                response = await client.request(method, path, json=body)
        except httpx.TransportError as error:
            raise VectorStoreUnavailable(
                f"vector store {self.url} unreachable: {type(error).__name__} {error}"
            ) from error
        if response.status_code >= 500:
            raise VectorStoreUnavailable(
                f"vector store {self.url} answered {response.status_code}: {response.text[:200]}"
            )
        response.raise_for_status()
        return response.json()

    async def _collection(self, create: bool = False) -> str:
        if self._collection_id is not None:
            return self._collection_id
        async with self._resolving:
            return await self._resolve(create)

    async def _resolve(self, create: bool) -> str:
        if self._collection_id is None:
            if create:
                reply = await self._call(
                    "POST",
                    f"{API}/collections",
                    {
                        "name": self.collection,
                        "get_or_create": True,
                        "metadata": {"hnsw:space": "cosine"},
                    },
                )
            else:
                reply = await self._call("GET", f"{API}/collections/{self.collection}")
            self._collection_id = str(reply["id"])
        return self._collection_id

    async def query(self, embedding: list[float], k: int) -> list[Document]:
        started = time.perf_counter()
        outcome = "error"
        try:
            collection = await self._collection()
            reply = await self._call(
                "POST",
                f"{API}/collections/{collection}/query",
                {
                    "query_embeddings": [embedding],
                    "n_results": k,
                    "include": ["documents", "metadatas", "distances"],
                },
            )
            outcome = "ok"
        finally:
            metrics.VECTOR_QUERIES.labels(outcome).inc()
            metrics.VECTOR_QUERY_DURATION.observe(time.perf_counter() - started)
        texts, metas = reply["documents"][0], reply["metadatas"][0] or []
        return [
            Document(page_content=text or "", metadata=meta or {}, id=doc_id)
            for doc_id, text, meta in zip(
                reply["ids"][0], texts, metas or [None] * len(texts), strict=True
            )
        ]

    async def add(
        self, ids: Sequence[str], documents: Sequence[Document], embeddings: Embeddings
    ) -> None:
        vectors = await embeddings.aembed_documents([d.page_content for d in documents])
        collection = await self._collection(create=True)
        await self._call(
            "POST",
            f"{API}/collections/{collection}/upsert",
            {
                "ids": list(ids),
                "embeddings": vectors,
                "documents": [d.page_content for d in documents],
                "metadatas": [d.metadata or None for d in documents],
            },
        )

    async def check(self) -> str | None:
        try:
            await self._call("GET", "/api/v2/heartbeat")
        except (VectorStoreUnavailable, httpx.HTTPError) as error:
            return str(error)
        return None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None


class EmbeddedStore:
    """LangChain's ``InMemoryVectorStore``, kept in a JSON file that every worker reloads
    when it changes (``make run``: no server)."""

    def __init__(self, path: Path, embeddings: Embeddings) -> None:
        self.path = path
        self.embeddings = embeddings
        self._store = InMemoryVectorStore(embeddings)
        self._loaded_mtime: float | None = None

    def _refresh(self) -> InMemoryVectorStore:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return self._store
        if mtime != self._loaded_mtime:
            self._store = InMemoryVectorStore.load(str(self.path), self.embeddings)
            self._loaded_mtime = mtime
        return self._store

    async def query(self, embedding: list[float], k: int) -> list[Document]:
        metrics.VECTOR_QUERIES.labels("ok").inc()
        return await self._refresh().asimilarity_search_by_vector(embedding, k=k)

    async def add(
        self, ids: Sequence[str], documents: Sequence[Document], embeddings: Embeddings
    ) -> None:
        store = self._refresh()
        await store.aadd_documents(list(documents), ids=list(ids))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        store.dump(str(self.path))
        self._loaded_mtime = self.path.stat().st_mtime

    async def check(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


def vector_store(settings: Settings, embeddings: Embeddings) -> VectorStore:
    """The store the settings name: Chroma at LANGSCALE_VECTOR_STORE_URL, else embedded."""
    if settings.vector_store_url:
        return ChromaStore(
            settings.vector_store_url,
            settings.vector_store_collection,
            settings.vector_store_pool_size,
            settings.vector_store_timeout,
        )
    return EmbeddedStore(settings.vector_store_path, embeddings)
