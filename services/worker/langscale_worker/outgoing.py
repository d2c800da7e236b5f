"""Outgoing LLM calls under control: shared rate limit, cache, replay (docs/outgoing-calls.md).

:func:`limited` wraps a LangChain chat model or embeddings; ``providers.chat_model`` and
``providers.embeddings`` apply it, so built-in pipelines and user pipelines built on them
are covered. A user's own model gets the same with ``limited(ChatOpenAI(...))``.

The wrappers reach Redis through one per-process :class:`Outgoing`, bound to the worker's
arq pool at start (:func:`bind`, called from the worker's startup): no connection per run.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage, message_chunk_to_message
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation
from langchain_core.runnables import Runnable, ensure_config
from pydantic import ConfigDict
from redis.asyncio import Redis

from langscale.contract import EventType
from langscale.keys import Keyspace
from langscale.lifecycle import Leases
from langscale.limits import find_limit
from langscale.settings import Settings, get_settings
from langscale_worker.context import AttemptRef, attempt_of, tenant_of
from langscale_worker.llm_cache import CallMemory, Recall, RecordAnswer, prompt_of
from langscale_worker.ratelimit import (
    FairGate,
    LimiterStats,
    SharedBudget,
    backoff_from_headers,
    retry_after,
)

logger = logging.getLogger(__name__)

# Writes events to a run's stream as an attempt (run id, fence token, events).
PublishEvents = Callable[[str, str, list[tuple[EventType, str]]], Awaitable[None]]
# Completion tokens assumed when a call sets no max_tokens (corrected from usage after).
DEFAULT_COMPLETION_TOKENS = 256
# Waits shorter than this are not worth an event in the run's stream.
WAIT_EVENT_MIN_SECONDS = 0.1


@dataclass
class OutgoingStats:
    """In-process counters of outgoing calls, exported on the worker's /metrics
    (``langscale.metrics.OutgoingCollector``)."""

    limiter: LimiterStats = field(default_factory=LimiterStats)
    provider_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    replays: int = 0
    rate_limited: int = 0  # 429 answers
    batches: int = 0
    batched_texts: int = 0

    def snapshot(self) -> dict[str, Any]:
        values = {k: v for k, v in self.__dict__.items() if k != "limiter"}
        values["limiter"] = self.limiter.snapshot()
        return values


class Outgoing:
    """Per process: the Redis pool, one budget and gate per provider/model, call memory."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        leases: Leases | None = None,
        publish: PublishEvents | None = None,
        record: RecordAnswer | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keyspace = Keyspace(settings.queue_name)
        self.publish = publish
        self.stats = OutgoingStats()
        self.memory = CallMemory(
            redis,
            self.keyspace,
            leases,
            cache_ttl=settings.llm_cache_ttl,
            replay=settings.llm_replay,
            cache=list(settings.llm_cache_pipelines),
            record=record,
        )
        self._gates: dict[str, FairGate | None] = {}

    def gate(self, model_id: str) -> FairGate | None:
        """The gate of a provider/model's budget; None when it has no limit."""
        if model_id not in self._gates:
            limit = find_limit(self.settings.llm_rate_limits, model_id)
            gate = None
            if limit is not None and (limit.rpm or limit.tpm):
                budget = SharedBudget(
                    self.redis,
                    self.keyspace.llm_rate(model_id),
                    limit,
                    window=self.settings.llm_rate_window,
                    burst=self.settings.llm_rate_burst,
                    lookahead=self.settings.llm_rate_lookahead,
                    block_max=self.settings.llm_rate_block_max,
                )
                gate = FairGate(budget, dict(self.settings.llm_tenant_weights), self.stats.limiter)
            self._gates[model_id] = gate
        return self._gates[model_id]

    async def record_wait(self, attempt: AttemptRef | None, model_id: str, seconds: float) -> None:
        logger.debug("waited for LLM budget", extra={"seconds": seconds})
        if attempt and self.publish and seconds >= WAIT_EVENT_MIN_SECONDS:
            data = {"reason": "rate_limit", "seconds": round(seconds, 3), "limit": model_id}
            await self.publish(attempt.run_id, attempt.fence, [(EventType.WAIT, json.dumps(data))])

    async def close(self) -> None:
        for gate in self._gates.values():
            if gate is not None:
                await gate.close()


_current: Outgoing | None = None


def bind(
    redis: Redis,
    settings: Settings | None = None,
    leases: Leases | None = None,
    publish: PublishEvents | None = None,
    record: RecordAnswer | None = None,
) -> Outgoing:
    """Use this Redis pool, leases and outbox (the worker process's) for every
    outgoing-call feature of the process."""
    global _current
    _current = Outgoing(settings or get_settings(), redis, leases, publish, record)
    return _current


def bound() -> Outgoing | None:
    """The process's :class:`Outgoing` if one exists (metrics read its counters)."""
    return _current


def current() -> Outgoing:
    """The process's :class:`Outgoing`; outside a worker, one made from the settings."""
    global _current
    if _current is None:
        from langscale.redis import create_redis

        settings = get_settings()
        _current = Outgoing(settings, create_redis(settings))
    return _current


def _metadata(run_manager: Any) -> dict[str, Any]:
    # astream() calls _astream without a run manager: the config in context has the
    # metadata the run inherits (run id, tenant).
    if run_manager is not None and run_manager.metadata:
        return dict(run_manager.metadata)
    return dict(ensure_config().get("metadata") or {})


class _Call:
    """One provider call: budget, 429 backoff for everyone, usage correction."""

    def __init__(self, model_id: str, metadata: dict[str, Any], tokens: int) -> None:
        self.outgoing = current()
        self.model_id = model_id
        self.attempt = attempt_of(metadata)
        self.tenant = tenant_of(metadata)
        self.tokens = tokens
        self.gate = self.outgoing.gate(model_id)
        self.retries_left = self.outgoing.settings.llm_rate_429_retries

    async def acquire(self) -> None:
        if self.gate is not None:
            waited = await self.gate.acquire(self.tenant, self.tokens)
            if waited > 0.001:
                await self.outgoing.record_wait(self.attempt, self.model_id, waited)
        self.outgoing.stats.provider_calls += 1

    async def should_retry(self, error: BaseException) -> bool:
        """A 429 blocks the budget for every worker; then retry (within the limit)."""
        seconds = retry_after(error)
        if seconds is None:
            return False
        self.outgoing.stats.rate_limited += 1
        if self.gate is not None:
            await self.gate.budget.block(seconds)
            self.outgoing.stats.limiter.blocks += 1
            logger.warning(
                "provider answered 429: every worker holds off",
                extra={"limit": self.model_id, "seconds": seconds},
            )
        if self.retries_left <= 0:
            return False
        self.retries_left -= 1
        if self.gate is None:  # no shared budget to wait on: honour Retry-After here
            await asyncio.sleep(min(seconds, self.outgoing.settings.llm_rate_block_max))
        return True

    async def finish(self, used_tokens: int | None, headers: Any) -> None:
        if self.gate is None:
            return
        if used_tokens is not None:
            await self.gate.budget.correct(used_tokens - self.tokens)
        backoff = backoff_from_headers(headers)
        if backoff:
            await self.gate.budget.block(backoff)
            self.outgoing.stats.limiter.blocks += 1


def estimate_tokens(messages: Sequence[BaseMessage], max_tokens: int | None) -> int:
    """Prompt characters / 4 plus the completion allowance (before the provider says)."""
    chars = sum(len(message.text) for message in messages)
    return chars // 4 + (max_tokens or DEFAULT_COMPLETION_TOKENS)


def _usage(generations: Sequence[Generation]) -> int | None:
    total = None
    for generation in generations:
        usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if usage:
            total = (total or 0) + int(usage.get("total_tokens", 0))
    return total


def _headers(generations: Sequence[Generation]) -> Any:
    for generation in generations:
        info = generation.generation_info or {}
        message = getattr(generation, "message", None)
        headers = info.get("headers") or (
            message.response_metadata.get("headers") if message is not None else None
        )
        if headers:
            return headers
    return None


def model_id_of(model: BaseChatModel | Embeddings) -> str:
    """``provider/model`` as LANGSCALE_LLM_RATE_LIMITS names it."""
    from langscale_worker.providers.fake import FakeChatModel, FakeEmbeddings

    if isinstance(model, FakeChatModel):
        return f"fake/{model.model_name}"
    if isinstance(model, FakeEmbeddings):
        return "fake/fake-embeddings"
    if isinstance(model, BaseChatModel):
        params = model._get_ls_params()
        return f"{params.get('ls_provider', 'unknown')}/{params.get('ls_model_name', 'unknown')}"
    provider = type(model).__name__.lower().removesuffix("embeddings") or "unknown"
    name = getattr(model, "model", None) or getattr(model, "model_name", None) or "unknown"
    return f"{provider}/{name}"


class ManagedChatModel(BaseChatModel):
    """A chat model whose calls go through the shared budget, the cache and replay.

    Delegates to ``inner``'s ``_agenerate``/``_astream`` (so tracing, streaming and
    callbacks behave as the inner model's) and reports the inner model's identity.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    model_id: str

    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return dict(self.inner._identifying_params)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return self.inner._get_ls_params(stop=stop, **kwargs)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        # Let the inner model format the tools, then bind them on the wrapper so the
        # calls still go through it.
        bound = self.inner.bind_tools(tools, **kwargs)
        return self.bind(**getattr(bound, "kwargs", {}))

    def _max_tokens(self, kwargs: dict[str, Any]) -> int | None:
        value = (
            kwargs.get("max_tokens")
            or kwargs.get("max_completion_tokens")
            or getattr(self.inner, "max_tokens", None)
        )
        return int(value) if isinstance(value, int) else None

    async def _recall(
        self, messages: list[BaseMessage], stop: list[str] | None, meta: dict[str, Any], kw: Any
    ) -> tuple[Recall | None, list[Generation] | None]:
        outgoing = current()
        attempt = attempt_of(meta)
        if attempt is None or not outgoing.memory.active:
            return None, None
        llm_string = self.inner._get_llm_string(stop=stop, **kw)
        recall, source = await outgoing.memory.recall(attempt, llm_string, prompt_of(messages))
        if source == "replay":
            outgoing.stats.replays += 1
        elif source == "cache":
            outgoing.stats.cache_hits += 1
        elif recall.cache_on:
            outgoing.stats.cache_misses += 1
        return recall, recall.generations

    async def _remember(
        self, meta: dict[str, Any], recall: Recall | None, generations: Sequence[Generation]
    ) -> None:
        attempt = attempt_of(meta)
        if recall is not None and attempt is not None:
            await current().memory.remember(attempt, recall, generations)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Sync callers (a sync-only pipeline, in a thread) bypass the budget: the budget
        # lives on the worker's event loop.
        return self.inner._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        meta = _metadata(run_manager)
        recall, known = await self._recall(messages, stop, meta, kwargs)
        if known is not None:
            return ChatResult(generations=[g for g in known if isinstance(g, ChatGeneration)])
        call = _Call(self.model_id, meta, estimate_tokens(messages, self._max_tokens(kwargs)))
        while True:
            await call.acquire()
            try:
                result = await self.inner._agenerate(
                    messages, stop=stop, run_manager=run_manager, **kwargs
                )
            except Exception as error:
                if await call.should_retry(error):
                    continue
                raise
            break
        await call.finish(_usage(result.generations), _headers(result.generations))
        await self._remember(meta, recall, result.generations)
        return result

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if type(self.inner)._astream is BaseChatModel._astream:
            # The inner model cannot stream: one chunk with the whole answer.
            result = await self._agenerate(messages, stop, run_manager, **kwargs)
            for answer in result.generations:
                yield ChatGenerationChunk(message=AIMessageChunk(content=answer.message.content))
            return
        meta = _metadata(run_manager)
        recall, known = await self._recall(messages, stop, meta, kwargs)
        if known is not None:
            for item in known:
                if isinstance(item, ChatGeneration):
                    message = item.message
                    yield ChatGenerationChunk(
                        message=AIMessageChunk(
                            content=message.content,
                            response_metadata=message.response_metadata,
                            usage_metadata=getattr(message, "usage_metadata", None),
                        )
                    )
            return
        call = _Call(self.model_id, meta, estimate_tokens(messages, self._max_tokens(kwargs)))
        total: ChatGenerationChunk | None = None
        while True:
            await call.acquire()
            try:
                async for chunk in self.inner._astream(
                    messages, stop=stop, run_manager=run_manager, **kwargs
                ):
                    total = chunk if total is None else total + chunk
                    yield chunk
            except Exception as error:
                if total is None and await call.should_retry(error):
                    continue
                raise
            break
        if total is not None:
            final = ChatGeneration(
                message=message_chunk_to_message(total.message),
                generation_info=total.generation_info,
            )
            await call.finish(_usage([final]), _headers([final]))
            await self._remember(meta, recall, [final])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        return self.inner._stream(messages, stop=stop, run_manager=run_manager, **kwargs)


class ManagedEmbeddings(Embeddings):
    """Embeddings whose calls go through the shared budget (one request per call)."""

    def __init__(self, inner: Embeddings, model_id: str) -> None:
        self.inner = inner
        self.model_id = model_id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        meta = dict(ensure_config().get("metadata") or {})
        call = _Call(self.model_id, meta, sum(len(text) for text in texts) // 4 + 1)
        while True:
            await call.acquire()
            try:
                return await self.inner.aembed_documents(texts)
            except Exception as error:
                if not await call.should_retry(error):
                    raise

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]


def limited(model: Any, model_id: str | None = None) -> Any:
    """Put a chat model or embeddings under langscale's control (rate limit, cache, replay).

    ``model_id`` (``provider/model``) names its budget in LANGSCALE_LLM_RATE_LIMITS; by
    default it is taken from the model. Wrapping twice is harmless.
    """
    if isinstance(model, ManagedChatModel | ManagedEmbeddings):
        return model
    if isinstance(model, BaseChatModel):
        return ManagedChatModel(inner=model, model_id=model_id or model_id_of(model))
    if isinstance(model, Embeddings):
        return ManagedEmbeddings(model, model_id or model_id_of(model))
    raise TypeError(f"limited() takes a chat model or embeddings, not {type(model).__name__}")
