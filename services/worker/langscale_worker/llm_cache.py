"""LLM answers kept in Redis: an exact-match cache, and replay of a retried run's calls.

- :class:`RedisLLMCache` is a LangChain ``BaseCache`` (async ``alookup``/``aupdate``):
  key = sha256 of the model's ``llm_string`` (model and parameters) and the serialized
  messages. langscale uses it for the pipelines in ``LANGSCALE_LLM_CACHE_PIPELINES``; any
  model can use it directly (``model.cache = RedisLLMCache(redis)``).
- :class:`CallMemory` is what makes a retry not pay twice: every completed call of a run
  is stored under (run id, hash of its inputs, n), n counting the calls with those inputs
  in the attempt. Counting per input keeps the slots stable when a run's calls are
  concurrent (a map step), where a plain call position would not be.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation
from redis.asyncio import Redis

from langscale import keys

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

    def __init__(self, redis: Redis, ttl: int = 3600) -> None:
        self.redis = redis
        self.ttl = ttl

    def lookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        return None

    def update(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        return None

    def clear(self, **kwargs: Any) -> None:
        return None

    async def alookup(self, prompt: str, llm_string: str) -> Sequence[Generation] | None:
        data = await self.redis.get(keys.llm_cache_key(digest(llm_string, prompt)))
        return load_generations(data, "cache") if data else None

    async def aupdate(self, prompt: str, llm_string: str, return_val: Sequence[Generation]) -> None:
        key = keys.llm_cache_key(digest(llm_string, prompt))
        await self.redis.set(key, dump_generations(return_val), ex=self.ttl)

    async def aclear(self, **kwargs: Any) -> None:
        async for key in self.redis.scan_iter(match=keys.llm_cache_key("*"), count=1000):
            await self.redis.delete(key)


# KEYS: run hash, replay hash, cache key. ARGV: input digest, replay on (1|0), ttl s,
# comma-separated cached pipelines.
# Returns {slot or '', replayed answer or '', cached answer or '', cache on for the run 0|1}.
# The attempt number and pipeline come from the run hash RunStore.start maintains.
_LOOKUP = """
local run = redis.call('HMGET', KEYS[1], 'attempts', 'pipeline')
local slot, replayed = '', false
if run[1] and ARGV[2] == '1' then
  local n = redis.call('HINCRBY', KEYS[2], 'n:' .. run[1] .. ':' .. ARGV[1], 1)
  slot = ARGV[1] .. ':' .. n
  replayed = redis.call('HGET', KEYS[2], 'v:' .. slot)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local cache_on = 0
if run[2] and string.find(',' .. ARGV[4] .. ',', ',' .. run[2] .. ',', 1, true) then
  cache_on = 1
end
local cached = false
if not replayed and cache_on == 1 then cached = redis.call('GET', KEYS[3]) end
return {slot, replayed or '', cached or '', cache_on}
"""


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
    slot: str  # where to store the answer for a later attempt ('' : not a langscale run)
    cache_on: bool
    generations: list[Generation] | None  # an answer to use instead of calling


class CallMemory:
    """Replay slots and the cache for the calls of langscale runs, one round trip each."""

    def __init__(
        self, redis: Redis, *, result_ttl: int, cache_ttl: int, replay: bool, cache: list[str]
    ) -> None:
        self.redis = redis
        self.result_ttl = result_ttl
        self.cache_ttl = cache_ttl
        self.replay = replay
        self.cache_pipelines = ",".join(cache)
        self._lookup = redis.register_script(_LOOKUP)

    @property
    def active(self) -> bool:
        return self.replay or bool(self.cache_pipelines)

    async def recall(
        self,
        run_id: str,
        llm_string: str,
        prompt: str,
        tenant: str = "default",
        first_attempt_of: str | None = None,
    ) -> tuple[Recall, str]:
        """The answer to reuse, if any, and where it came from (replay, cache or '').

        ``first_attempt_of``: the pipeline, when the caller knows this is the run's first
        attempt. Nothing can be replayed then, so an uncached pipeline needs no Redis
        call: the call's slot is numbered in this process (attempts run in one process).
        """
        key = digest(llm_string, prompt)
        # Cached answers are per tenant: one tenant must not learn what another asked.
        cache_key = keys.llm_cache_key(digest(tenant, key))
        cached_here = (
            first_attempt_of is not None and first_attempt_of in self.cache_pipelines.split(",")
        )
        if first_attempt_of is not None and not cached_here:
            counters = _FIRST_ATTEMPT_CALLS.get()
            if counters is not None:
                counters[key] = n = counters.get(key, 0) + 1
                slot = f"{key}:{n}" if self.replay else ""
                return Recall(key, cache_key, slot, False, None), ""
        slot, replayed, cached, cache_on = await self._lookup(
            keys=[keys.run_key(run_id), keys.llm_replay_key(run_id), cache_key],
            args=[key, "1" if self.replay else "0", self.result_ttl, self.cache_pipelines],
        )
        slot = slot.decode() if isinstance(slot, bytes) else str(slot)
        source = "replay" if replayed else "cache" if cached else ""
        data = replayed or cached
        generations = load_generations(data, source) if data else None
        return Recall(key, cache_key, slot, bool(cache_on), generations), source

    async def remember(
        self, run_id: str, recall: Recall, generations: Sequence[Generation]
    ) -> None:
        """Store a fresh answer for later attempts of the run, and in the cache."""
        if not recall.slot and not recall.cache_on:
            return
        data = dump_generations(generations)
        async with self.redis.pipeline(transaction=False) as pipe:
            if recall.slot:
                replay_key = keys.llm_replay_key(run_id)
                pipe.hset(replay_key, f"v:{recall.slot}", data)
                pipe.expire(replay_key, self.result_ttl)
            if recall.cache_on:
                pipe.set(recall.cache_key, data, ex=self.cache_ttl)
            await pipe.execute()


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
