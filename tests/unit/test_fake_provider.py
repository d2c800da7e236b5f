from __future__ import annotations

import asyncio
import time

from langchain_core.messages import HumanMessage

from langscale_worker.providers.fake import FakeChatModel, FakeEmbeddings, FakeLatency


async def test_chat_is_deterministic_and_reports_usage() -> None:
    model = FakeChatModel()
    reply = await model.ainvoke([HumanMessage(content="two words")])
    assert reply.content == "You said: two words"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 4


async def test_ainvoke_waits_on_the_event_loop_not_in_a_thread() -> None:
    model = FakeChatModel(latency=FakeLatency(median=0.2))
    started = time.monotonic()
    await asyncio.gather(*(model.ainvoke("x") for _ in range(50)))
    # 50 concurrent calls of 0.2 s overlap on one loop (a thread pool would queue them).
    assert time.monotonic() - started < 50 * 0.2 / 5


async def test_stream_yields_the_reply_token_by_token() -> None:
    model = FakeChatModel(tokens_per_second=1000)
    tokens = [chunk.content async for chunk in model.astream("a b c") if chunk.content]
    assert tokens == ["You", " said:", " a", " b", " c"]


def test_lognormal_latency_is_seeded_and_centred_on_its_median() -> None:
    draws = [FakeLatency(median=0.5, sigma=0.5, seed=7).draw() for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    latency = FakeLatency(median=0.5, sigma=0.5, seed=1)
    samples = sorted(latency.draw() for _ in range(2001))
    assert 0.4 < samples[1000] < 0.6


async def test_embeddings_are_unit_vectors_stable_per_text() -> None:
    embeddings = FakeEmbeddings(dimensions=8)
    a, b, a2 = await embeddings.aembed_documents(["a", "b", "a"])
    assert a == a2 != b
    assert abs(sum(x * x for x in a) - 1) < 1e-9
