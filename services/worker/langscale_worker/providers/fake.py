"""The offline ``fake`` provider: real LangChain models that answer deterministically.

Unlike LangChain's ``GenericFakeChatModel`` (whose ``ainvoke`` runs in a thread pool), both
models here wait with ``asyncio.sleep`` on the event loop, so benchmarks measure langscale,
not a thread pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import BaseModel, Field, PrivateAttr

from langscale.settings import Settings


class FakeLatency(BaseModel):
    """Fixed latency, or lognormal with the given median when ``sigma`` > 0."""

    median: float = 0.0
    sigma: float = 0.0
    seed: int | None = None
    _rng: random.Random = PrivateAttr(default_factory=random.Random)

    def model_post_init(self, context: Any) -> None:
        self._rng = random.Random(self.seed)

    def draw(self) -> float:
        if self.sigma <= 0 or self.median <= 0:
            return self.median
        return self._rng.lognormvariate(math.log(self.median), self.sigma)


def fake_reply(messages: list[BaseMessage]) -> str:
    """The deterministic answer: echoes the last message's text."""
    last = messages[-1].text if messages else ""
    return f"You said: {last}"


def _usage(messages: list[BaseMessage], reply: str) -> UsageMetadata:
    prompt_tokens = sum(len(m.text.split()) for m in messages)
    completion_tokens = len(reply.split())
    return UsageMetadata(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


class FakeChatModel(BaseChatModel):
    """Answers ``You said: <last message>`` after ``latency``; streams word by word."""

    latency: FakeLatency = Field(default_factory=FakeLatency)
    tokens_per_second: float = 200.0
    model_name: str = "fake-chat"

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeChatModel:
        return cls(
            latency=FakeLatency(median=settings.fake_latency, sigma=settings.fake_latency_sigma),
            tokens_per_second=settings.fake_tokens_per_second,
        )

    @property
    def _llm_type(self) -> str:
        return "langscale-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        # provider "fake", as LANGSCALE_LLM_RATE_LIMITS and the metrics name it
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "fake"
        return params

    def _result(self, messages: list[BaseMessage]) -> ChatResult:
        reply = fake_reply(messages)
        message = AIMessage(
            content=reply,
            usage_metadata=_usage(messages, reply),
            response_metadata={"model_name": self.model_name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        time.sleep(self.latency.draw())
        return self._result(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        await asyncio.sleep(self.latency.draw())
        return self._result(messages)

    def _tokens(self, messages: list[BaseMessage]) -> list[str]:
        words = fake_reply(messages).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        time.sleep(self.latency.draw())
        for token in self._tokens(messages):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
            time.sleep(1 / self.tokens_per_second)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # Time to first token is the latency; later tokens come at tokens_per_second.
        await asyncio.sleep(self.latency.draw())
        for index, token in enumerate(self._tokens(messages)):
            if index:
                await asyncio.sleep(1 / self.tokens_per_second)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager:
                await run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from the text's hash: same text, same vector."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class FakeEmbeddings(BaseModel, Embeddings):
    """Deterministic embeddings after ``latency`` per call (not per text)."""

    dimensions: int = 16
    latency: FakeLatency = Field(default_factory=FakeLatency)

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeEmbeddings:
        return cls(
            dimensions=settings.fake_embedding_dimensions,
            latency=FakeLatency(median=settings.fake_latency, sigma=settings.fake_latency_sigma),
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        time.sleep(self.latency.draw())
        return [fake_vector(t, self.dimensions) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(self.latency.draw())
        return [fake_vector(t, self.dimensions) for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
