"""LLM answers kept in Redis: an exact-match cache, and replay of a retried run's calls.

- :class:`RedisLLMCache` is a LangChain ``BaseCache`` (async ``alookup``/``aupdate``):
  key = sha256 of the model's ``llm_string`` (model and parameters) and the serialized
  messages. langscale uses it for the pipelines in ``LANGSCALE_LLM_CACHE_PIPELINES``; any
  model can use it directly (``model.cache = RedisLLMCache(redis)``).
- :class:`CallMemory` is what makes a retry not pay twice: every completed call of a run
  is stored under (run id, hash of its inputs, n), n counting the calls with those inputs
  in the attempt. Counting per input keeps the slots stable when a run's calls are
  concurrent (a map step), where a plain call position would not be. The slots live in the
  run's replay hash, written only by the attempt holding the run's fence token
  (``langscale/lifecycle/scripts/replay.lua``) and deleted when the run ends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation
from redis.asyncio import Redis

from langscale.keys import Keyspace, partition_of
from langscale.lifecycle import Applied, Leases, StaleAttempt
from langscale_worker.context import AttemptRef

# Written into response_metadata of an answer that did not come from the provider.
SOURCE_KEY = "langscale_source"


def digest(llm_string: str, prompt: str) -> str:
    return hashlib.sha256(f"{llm_string}\x00{prompt}".encode()).hexdigest()


def dump_generations(generations: Sequence[Generation]) -> str:
    items = []
    for generation in generations:
        item: dict[str, Any] = {"text": generation.text, "info": generation.generation_info}
        if isinstance(generation, ChatGeneration):
            item["message"] = message_to_dict(generation.message)
        items.append(item)
    return json.dumps(items, separators=(",", ":"), default=str)


def load_generations(data: bytes | str, source: str | None = None) -> list[Generation]:
    generations: list[Generation] = []
    for item in json.loads(data):
        if "message" in item:
            (message,) = messages_from_dict([item["message"]])
            if source:
                message.response_metadata = {**message.response_metadata, SOURCE_KEY: source}
            generations.append(ChatGeneration(message=message, generation_info=item["info"]))
        else:
            generations.append(Generation(text=item["text"], generation_info=item["info"]))
    return generations


class RedisLLMCache(BaseCache):
    """Async LangChain cache in Redis, with a TTL. Sync lookups miss (a worker is async)."""

    def __init__(self, redis: Redis, keyspace: Keyspace | None = None, ttl: int = 3600) -> None:
        self.redis = redis
        self.keyspace = keyspace or Keyspace()
        self.ttl = ttl

    def lookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        return None

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        return None

    def clear(self, **kwargs: Any) -> None:
        return None

    async def alookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        data = await self.redis.get(self.keyspace.llm_cache(digest(llm_string, prompt)))
        return load_generations(data, "cache") if data else None

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        key = self.keyspace.llm_cache(digest(llm_string, prompt))
        await self.redis.set(key, dump_generations(return_val), ex=self.ttl)

    async def aclear(self, **kwargs: Any) -> None:
        async for key in self.redis.scan_iter(match=self.keyspace.llm_cache("*"), count=1000):
            await self.redis.delete(key)


# Calls made so far in a run's first attempt, by input digest (set per attempt by the job).
_FIRST_ATTEMPT_CALLS: ContextVar[dict[str, int] | None] = ContextVar(
    "langscale_first_attempt_calls", default=None
)


def start_attempt_numbering() -> None:
    """Begin numbering the LLM calls of a first attempt in this task's context."""
    _FIRST_ATTEMPT_CALLS.set({})


@dataclass(frozen=True)
class Recall:
    """What Redis already knows about one LLM call of a run."""

    digest: str
    cache_key: str
    slot: str  # where to store the answer for a later attempt ('' : nowhere)
    cache_on: bool
    generations: list[Generation] | None  # an answer to use instead of calling


# Stores an LLM answer for later attempts of its run: (run id, fence token, slot, answer
# JSON). The worker process's outbox batches them with its other writes (no round trip per
# call); a refused (stale) one is counted there, and the attempt learns it at its next write.
RecordAnswer = Callable[[str, str, str, str], Awaitable[None]]


class CallMemory:
    """Replay slots (through the run's lifecycle, fenced) and the cache for the LLM calls
    of langscale runs: no Redis round trip for a first attempt's uncached call."""

    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace,
        leases: Leases | None,
        *,
        cache_ttl: int,
        replay: bool,
        cache: list[str],
        record: RecordAnswer | None = None,
    ) -> None:
        self.redis = redis
        self.keyspace = keyspace
        self.leases = leases  # None outside a worker process: nothing to replay
        self.cache_ttl = cache_ttl
        self.replay = replay and leases is not None
        self.cache_pipelines = frozenset(cache)
        self._record = record or self._record_now

    async def _record_now(self, run_id: str, fence: str, slot: str, answer: str) -> None:
        assert self.leases is not None
        (applied,) = await self.leases.remember(
            partition_of(run_id), [(run_id, fence, slot, answer)]
        )
        if applied is Applied.STALE:
            raise StaleAttempt(f"run {run_id} is held by another attempt")

    @property
    def active(self) -> bool:
        return self.replay or bool(self.cache_pipelines)

    async def recall(self, attempt: AttemptRef, llm_string: str, prompt: str) -> tuple[Recall, str]:
        """The answer to reuse, if any, and where it came from (replay, cache or '')."""
        key = digest(llm_string, prompt)
        # Cached answers are per tenant: one tenant must not learn what another asked.
        cache_key = self.keyspace.llm_cache(digest(attempt.tenant, key))
        cache_on = attempt.pipeline in self.cache_pipelines
        slot, data, source = "", None, ""
        counters = _FIRST_ATTEMPT_CALLS.get() if attempt.attempt == 1 else None
        if counters is not None:
            # Nothing to replay in a first attempt (attempts run in one process): number
            # the call here, no Redis call.
            counters[key] = n = counters.get(key, 0) + 1
            slot = f"{key}:{n}" if self.replay else ""
        elif self.replay and self.leases is not None:
            found = await self.leases.recall(attempt.run_id, attempt.fence, key)
            if found is None:
                raise StaleAttempt(f"run {attempt.run_id} is held by another attempt")
            slot, data = found
            source = "replay" if data else ""
        if data is None and cache_on:
            data = await self.redis.get(cache_key)
            source = "cache" if data else ""
        generations = load_generations(data, source) if data else None
        return Recall(key, cache_key, slot, cache_on, generations), source

    async def remember(
        self, attempt: AttemptRef, recall: Recall, generations: Sequence[Generation]
    ) -> None:
        """Store a fresh answer for later attempts of the run, and in the cache."""
        if not recall.slot and not recall.cache_on:
            return
        data = dump_generations(generations)
        if recall.slot and self.leases is not None:
            await self._record(attempt.run_id, attempt.fence, recall.slot, data)
        if recall.cache_on:
            await self.redis.set(recall.cache_key, data, ex=self.cache_ttl)


def prompt_of(messages: Sequence[BaseMessage]) -> str:
    """The messages as the cache key sees them: every field that reaches the provider
    (role, content, name, tool calls and their ids), as canonical JSON. About ten times
    cheaper than LangChain's ``dumps``, which serializes each message's whole model."""
    return json.dumps(
        [
            [
                m.type,
                m.content,
                m.name,
                m.additional_kwargs,
                getattr(m, "tool_calls", None),
                getattr(m, "tool_call_id", None),
            ]
            for m in messages
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
