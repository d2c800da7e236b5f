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
