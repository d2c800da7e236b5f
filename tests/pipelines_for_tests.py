"""Pipelines that only the tests serve: failures, sync-only code, slow runs."""

from __future__ import annotations

import asyncio
import time

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel


class Text(BaseModel):
    text: str


def failing() -> Runnable:
    """Always raises ValueError."""

    def explode(value: dict) -> str:
        raise ValueError(f"cannot handle {value['text']!r}")

    return RunnableLambda(explode).with_types(input_type=Text, output_type=str)


def sync_upper() -> Runnable:
    """A sync-only runnable (no async path): LangChain runs it in a thread."""

    def upper(value: dict) -> str:
        time.sleep(0.01)
        return value["text"].upper()

    return RunnableLambda(upper).with_types(input_type=Text, output_type=str)


class Sleep(BaseModel):
    seconds: float


def sleepy() -> Runnable:
    """Sleeps for the given seconds, then answers how long it slept."""

    async def sleep(value: dict) -> float:
        await asyncio.sleep(value["seconds"])
        return float(value["seconds"])

    return RunnableLambda(sleep).with_types(input_type=Sleep, output_type=float)


not_a_runnable = 42

TEST_PIPELINES = (
    "chat=langscale_worker.pipelines:chat,"
    "summarize=langscale_worker.pipelines:summarize,"
    "embed=langscale_worker.pipelines:embed,"
    "failing=pipelines_for_tests:failing,"
    "sync-upper=pipelines_for_tests:sync_upper,"
    "sleepy=pipelines_for_tests:sleepy"
)


def message_echo() -> Runnable:
    """Answers an AIMessage echoing the last message of a list of messages."""

    def echo(messages: list[BaseMessage]) -> AIMessage:
        return AIMessage(content=f"echo: {messages[-1].content}")

    return RunnableLambda(echo).with_types(input_type=list[BaseMessage], output_type=AIMessage)


class Work(BaseModel):
    id: str
    seconds: float = 0.2
    chunks: int = 4
    pad: int = 0  # characters added to each chunk (big outputs)
    poison: bool = False


def recorded() -> Runnable:
    """Streams ``chunks`` chunks over ``seconds``, each naming the attempt that made it, and
    records every execution (start and end, with its attempt and process) in the Redis at
    ``TEST_RECORD_URL``: the fault tests' history. ``poison`` kills the worker process."""
    import json
    import os
    from collections.abc import AsyncIterator

    from langchain_core.runnables import RunnableConfig
    from redis.asyncio import Redis

    redis = (
        Redis.from_url(os.environ["TEST_RECORD_URL"]) if "TEST_RECORD_URL" in os.environ else None
    )

    async def record(event: str, value: dict, meta: dict) -> None:
        if redis is not None:
            entry = {
                "event": event,
                "id": value["id"],
                "run_id": meta.get("langscale_run_id"),
                "attempt": meta.get("langscale_attempt"),
                "pid": os.getpid(),
                "at": time.time(),
            }
            await redis.rpush("test:executions", json.dumps(entry))

    async def work(value: dict, config: RunnableConfig) -> AsyncIterator[str]:
        meta = config.get("metadata") or {}
        await record("start", value, meta)
        if value.get("poison"):
            os._exit(13)  # a run that takes its process down (segfault, OOM kill...)
        chunks = max(1, int(value.get("chunks", 4)))
        for index in range(chunks):
            await asyncio.sleep(float(value.get("seconds", 0.2)) / chunks)
            padding = "." * int(value.get("pad", 0))
            yield f"{value['id']}:{meta.get('langscale_attempt')}:{index}{padding} "
        await record("end", value, meta)

    return RunnableLambda(work).with_types(input_type=Work, output_type=str)


FAULT_PIPELINES = f"{TEST_PIPELINES},recorded=pipelines_for_tests:recorded"


def flaky_once() -> Runnable:
    """Fails its first attempt with a retriable error, then answers ``ok``."""
    from langchain_core.runnables import RunnableConfig

    from langscale_worker import RetriableError

    def once(value: Text, config: RunnableConfig) -> str:
        if (config.get("metadata") or {}).get("langscale_attempt") == 1:
            raise RetriableError("first attempts fail")
        return "ok"

    return RunnableLambda(once).with_types(input_type=Text, output_type=str)
