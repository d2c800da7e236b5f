"""Micro-batching of embeddings: concurrent runs in one worker share provider calls.

Every ``aembed_documents`` call joins the open batch; the batch goes when it holds
``max_size`` texts or ``max_wait`` after its first text arrived, whichever is first, so a
caller waits at most ``max_wait`` longer than it would alone. One provider call embeds the
whole batch and each caller gets its own vectors back, in its own order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from langchain_core.embeddings import Embeddings


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[list[list[float]]]


@dataclass
class BatchStats:
    calls: int = 0  # provider calls made
    texts: int = 0
    requests: int = 0  # aembed_documents calls served


@dataclass
class _Batch:
    items: list[_Pending] = field(default_factory=list)
    size: int = 0


class BatchingEmbeddings(Embeddings):
    def __init__(self, inner: Embeddings, max_size: int = 256, max_wait: float = 0.005):
        self.inner = inner
        self.max_size = max_size
        self.max_wait = max_wait
        self.stats = BatchStats()
        self._open = _Batch()
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        self.stats.requests += 1
        if len(texts) >= self.max_size:  # a full batch on its own
            self.stats.calls += 1
            self.stats.texts += len(texts)
            return await self.inner.aembed_documents(texts)
        loop = asyncio.get_running_loop()
        if self._open.size + len(texts) > self.max_size:
            self._flush()
        pending = _Pending(list(texts), loop.create_future())
        self._open.items.append(pending)
        self._open.size += len(texts)
        if self._open.size >= self.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._flush)
        return await pending.future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._open = self._open, _Batch()
        if batch.items:
            # The send runs in the context of the caller that filled or opened the batch
            # (its run's metadata: tenant for the budget, trace).
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: _Batch) -> None:
        texts = [text for item in batch.items for text in item.texts]
        self.stats.calls += 1
        self.stats.texts += len(texts)
        try:
            vectors = await self.inner.aembed_documents(texts)
            if len(vectors) != len(texts):
                raise ValueError(f"{len(vectors)} embeddings for {len(texts)} texts")
        except asyncio.CancelledError:
            for item in batch.items:
                item.future.cancel()
            raise
        except Exception as error:
            for item in batch.items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        start = 0
        for item in batch.items:
            end = start + len(item.texts)
            if not item.future.done():  # its caller may have been cancelled
                item.future.set_result(vectors[start:end])
            start = end
