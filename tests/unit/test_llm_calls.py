"""Cache, replay and batching of LLM calls, on real Redis and real LangChain runnables.

The provider is the fake one, counting its calls (the only fake allowed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig
from lifecycle_helpers import claim_all, lifecycle_config, next_attempt, submit
from redis.asyncio import Redis

from langscale.contract import EventType
from langscale.lifecycle import Claim, Leases, RunStore, StaleAttempt
from langscale.localredis import LocalRedis
from langscale.settings import Settings
from langscale_worker import outgoing
from langscale_worker.batching import BatchingEmbeddings
from langscale_worker.context import attempt_metadata
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
def store(redis: Redis, redis_server: LocalRedis) -> RunStore:
    return RunStore(redis, lifecycle_config(redis_server.url, result_ttl=60))


@pytest.fixture
def leases(redis: Redis, store: RunStore) -> Leases:
    return Leases(redis, store.config, "test-worker", ["chat", "summarize"])


def bind(redis: Redis, redis_server: LocalRedis, leases: Leases, **settings: Any) -> Settings:
    """The worker process's binding: its pool, its leases, and a publisher of events."""
    values = Settings(redis_url=redis_server.url, **settings)

    async def publish(run_id: str, fence: str, events: list[tuple[EventType, str]]) -> None:
        (written,) = await leases.append(0, [(run_id, fence, events)])
        if written < 0:
            raise StaleAttempt(run_id)

    outgoing.bind(redis, values, leases, publish)
    return values


async def start_run(store: RunStore, leases: Leases, pipeline: str = "chat") -> Claim:
    """A new run, streamed, and its first attempt."""
    (run_id,) = await submit(store, pipeline, streamed=True)
    (claim,) = [c for c in await claim_all(leases) if c.run_id == run_id]
    return claim


def config(claim: Claim, tenant: str = "t1") -> RunnableConfig:
    return {
        "metadata": attempt_metadata(
            claim.run_id, claim.fence, tenant, claim.pipeline, claim.attempt
        )
    }


def chain(model: Any) -> Any:
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    return prompt | model | StrOutputParser()


async def test_a_retried_attempt_replays_the_calls_it_completed(
    redis: Redis, redis_server: LocalRedis, store: RunStore, leases: Leases
) -> None:
    bind(redis, redis_server, leases)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    claim = await start_run(store, leases)

    async def attempt(claim: Claim) -> list[str]:
        # Concurrent calls, two of them with equal inputs: slots count per input.
        inputs = [{"q": "a"}, {"q": "b"}, {"q": "a"}]
        answers = await pipeline.abatch(inputs, config=config(claim))
        last = await pipeline.ainvoke({"q": "c"}, config=config(claim))
        return [*answers, last]

    first = await attempt(claim)
    assert inner.calls == 4
    claim = await next_attempt(leases, claim)
    assert await attempt(claim) == first
    assert inner.calls == 4  # nothing paid twice
    claim = await next_attempt(leases, claim)  # attempt 3 goes further than the others did
    for _ in range(3):
        await pipeline.ainvoke({"q": "a"}, config=config(claim))
    assert inner.calls == 5  # the third "a" of this attempt is new


async def test_a_stale_attempt_can_neither_replay_nor_record_answers(
    redis: Redis, redis_server: LocalRedis, store: RunStore, leases: Leases
) -> None:
    bind(redis, redis_server, leases)
    pipeline = chain(outgoing.limited(CountingChat()))
    stale = await start_run(store, leases)
    await next_attempt(leases, stale)  # another attempt holds the run now
    with pytest.raises(StaleAttempt):
        await pipeline.ainvoke({"q": "a"}, config=config(stale))


async def test_streamed_calls_are_replayed_too(
    redis: Redis, redis_server: LocalRedis, store: RunStore, leases: Leases
) -> None:
    bind(redis, redis_server, leases)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    claim = await start_run(store, leases)
    chunks = [c async for c in pipeline.astream({"q": "hello there"}, config=config(claim))]
    assert "".join(chunks) == "You said: hello there" and inner.calls == 1
    claim = await next_attempt(leases, claim)
    again = [c async for c in pipeline.astream({"q": "hello there"}, config=config(claim))]
    assert "".join(again) == "You said: hello there" and inner.calls == 1


async def test_cache_serves_opted_in_pipelines_per_tenant(
    redis: Redis, redis_server: LocalRedis, store: RunStore, leases: Leases
) -> None:
    bind(redis, redis_server, leases, llm_cache_pipelines=["chat"], llm_replay=False)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    for _ in range(3):
        claim = await start_run(store, leases, "chat")
        assert await pipeline.ainvoke({"q": "x"}, config=config(claim)) == "You said: x"
    assert inner.calls == 1
    assert outgoing.current().stats.cache_hits == 2
    other_tenant = await start_run(store, leases, "chat")
    await pipeline.ainvoke({"q": "x"}, config=config(other_tenant, tenant="t2"))
    assert inner.calls == 2  # tenants do not see each other's answers
    for _ in range(2):
        not_opted_in = await start_run(store, leases, "summarize")
        await pipeline.ainvoke({"q": "x"}, config=config(not_opted_in))
    assert inner.calls == 4
    different_parameters = chain(outgoing.limited(CountingChat(model_name="other")))
    claim = await start_run(store, leases, "chat")
    await different_parameters.ainvoke({"q": "x"}, config=config(claim))
    assert outgoing.current().stats.cache_hits == 2  # another model: another key


async def test_rate_limited_model_waits_and_records_it_in_the_run_stream(
    redis: Redis, redis_server: LocalRedis, store: RunStore, leases: Leases
) -> None:
    rate = {"llm_rate_limits": {"fake/*": {"rpm": 5}}, "llm_rate_window": 1.0}
    bind(redis, redis_server, leases, **rate)
    inner = CountingChat()
    pipeline = chain(outgoing.limited(inner))
    claim = await start_run(store, leases)
    await pipeline.abatch([{"q": str(i)} for i in range(4)], config=config(claim))
    events = await store.read_events(claim.run_id, 0)
    waits = [data for _, kind, data in events if kind is EventType.WAIT]
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
