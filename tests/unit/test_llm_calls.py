"""Cache, replay and batching of LLM calls, on real Redis and real LangChain runnables.

The provider is the fake one, counting its calls (the only fake allowed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig
from redis.asyncio import Redis

from langscale.contract import JobSpec, new_run_id
from langscale.localredis import LocalRedis
from langscale.runs import RunStore
from langscale.settings import Settings
from langscale_worker import outgoing
from langscale_worker.batching import BatchingEmbeddings
from langscale_worker.providers.fake import FakeChatModel, FakeEmbeddings, fake_vector


class CountingChat(FakeChatModel):
    calls: int = 0

    async def _agenerate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await super()._agenerate(messages, *args, **kwargs)

    async def _astream(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        async for chunk in super()._astream(messages, *args, **kwargs):
            yield chunk


class CountingEmbeddings(FakeEmbeddings):
    batches: list[int] = []

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(len(texts))
        return await super().aembed_documents(texts)


@pytest.fixture
async def redis(redis_server: LocalRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def store(redis: Redis) -> RunStore:
    return RunStore(redis, queue_name="test:queue", result_ttl=60)


def bind(redis: Redis, redis_server: LocalRedis, **settings: Any) -> Settings:
    values = Settings(redis_url=redis_server.url, **settings)
    outgoing.bind(redis, values)
    return values


async def start_run(store: RunStore, pipeline: str = "chat") -> str:
    spec = JobSpec(run_id=new_run_id(), pipeline=pipeline, input={})
    await store.enqueue([spec])
    await store.start(spec.run_id)
    return spec.run_id


def config(run_id: str, tenant: str = "t1") -> RunnableConfig:
    return {"metadata": {"langscale_run_id": run_id, "langscale_tenant": tenant}}


def chain(model: Any) -> Any:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    return prompt | model | StrOutputParser()


async def test_a_retried_attempt_replays_the_calls_it_completed(
    redis: Redis, redis_server: LocalRedis, store: RunStore
) -> None:
    bind(redis, redis_server)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    run_id = await start_run(store)

    async def attempt() -> list[str]:
        # Concurrent calls, two of them with equal inputs: slots count per input.
        answers = await pipeline.abatch([{"q": "a"}, {"q": "b"}, {"q": "a"}], config=config(run_id))
        last = await pipeline.ainvoke({"q": "c"}, config=config(run_id))
        return [*answers, last]

    first = await attempt()
    assert inner.calls == 4
    await store.start(run_id)  # attempt 2
    assert await attempt() == first
    assert inner.calls == 4  # nothing paid twice
    await store.start(run_id)  # attempt 3 goes further than the others did
    await pipeline.ainvoke({"q": "a"}, config=config(run_id))
    await pipeline.ainvoke({"q": "a"}, config=config(run_id))
    await pipeline.ainvoke({"q": "a"}, config=config(run_id))
    assert inner.calls == 5  # the third "a" of this attempt is new


async def test_streamed_calls_are_replayed_too(
    redis: Redis, redis_server: LocalRedis, store: RunStore
) -> None:
    bind(redis, redis_server)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    run_id = await start_run(store)
    chunks = [c async for c in pipeline.astream({"q": "hello there"}, config=config(run_id))]
    assert "".join(chunks) == "You said: hello there" and inner.calls == 1
    await store.start(run_id)
    again = [c async for c in pipeline.astream({"q": "hello there"}, config=config(run_id))]
    assert "".join(again) == "You said: hello there" and inner.calls == 1


async def test_cache_serves_opted_in_pipelines_per_tenant(
    redis: Redis, redis_server: LocalRedis, store: RunStore
) -> None:
    bind(redis, redis_server, llm_cache_pipelines=["chat"], llm_replay=False)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    for _ in range(3):
        run_id = await start_run(store, "chat")
        assert await pipeline.ainvoke({"q": "x"}, config=config(run_id)) == "You said: x"
    assert inner.calls == 1
    assert outgoing.current().stats.cache_hits == 2
    other_tenant = await start_run(store, "chat")
    await pipeline.ainvoke({"q": "x"}, config=config(other_tenant, tenant="t2"))
    assert inner.calls == 2  # tenants do not see each other's answers
    for _ in range(2):
        not_opted_in = await start_run(store, "summarize")
        await pipeline.ainvoke({"q": "x"}, config=config(not_opted_in))
    assert inner.calls == 4
    different_parameters = chain(outgoing.limited(CountingChat(model_name="other")))
    run_id = await start_run(store, "chat")
    await different_parameters.ainvoke({"q": "x"}, config=config(run_id))
    assert outgoing.current().stats.cache_hits == 2  # another model: another key


async def test_rate_limited_model_waits_and_records_it_in_the_run_stream(
    redis: Redis, redis_server: LocalRedis, store: RunStore
) -> None:
    bind(redis, redis_server, llm_rate_limits={"fake/*": {"rpm": 5}}, llm_rate_window=1.0)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    run_id = await start_run(store)
    await pipeline.abatch([{"q": str(i)} for i in range(4)], config=config(run_id))
    events = await store.read_events(run_id, "0", block_ms=0)
    waits = [data for _, kind, data in events if kind.value == "wait"]
    assert waits and '"reason": "rate_limit"' in waits[-1]
    assert outgoing.current().stats.limiter.granted == 4


async def test_batching_gathers_concurrent_callers_and_splits_back() -> None:
    inner = CountingEmbeddings(dimensions=4)
    inner.batches = []
    batching = BatchingEmbeddings(inner, max_size=64, max_wait=0.02)
    texts = [[f"run {i} text {j}" for j in range(3)] for i in range(50)]
    results = await asyncio.gather(*(batching.aembed_documents(t) for t in texts))
    for run_texts, vectors in zip(texts, results, strict=True):
        assert vectors == [fake_vector(t, 4) for t in run_texts]
    assert sum(inner.batches) == 150 and len(inner.batches) <= 3
    assert max(inner.batches) <= 64
    alone = await batching.aembed_documents([f"big {i}" for i in range(64)])
    assert len(alone) == 64 and inner.batches[-1] == 64


async def test_batching_delivers_a_provider_error_to_every_caller() -> None:
    class Broken(FakeEmbeddings):
        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            raise RuntimeError("provider down")

    batching = BatchingEmbeddings(Broken(), max_size=64, max_wait=0.01)
    results = await asyncio.gather(
        *(batching.aembed_documents(["x"]) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
