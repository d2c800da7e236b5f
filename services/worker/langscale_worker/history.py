"""Chat history for every worker: a thread's messages in Redis, behind LangChain's
``BaseChatMessageHistory``, for ``RunnableWithMessageHistory``.

A thread's runs never execute at the same time (the lifecycle serializes them), so its
history is written by one run at a time, in order. Every write is a write of the run's
current attempt and presents its fence token: an interrupted or taken-over attempt writes
nothing more, and a retried run's earlier writes are replaced, never repeated. The history
keeps the latest ``LANGSCALE_HISTORY_MAX_MESSAGES`` messages, for ``LANGSCALE_THREAD_TTL``.

:func:`with_thread_history` wraps a chain as ``RunnableWithMessageHistory`` does, with
``config.configurable.session_id`` as the thread, and records the new input messages when
the run starts, so an interrupted run leaves its question in the history (and a rollback
drops it); the answer is added when the chain ends. :class:`PartialAnswer` collects the
model's output while an attempt runs, so an attempt an ``interrupt`` stops adds what it had
answered so far (:func:`partial_message`, marked ``{"langscale": {"interrupted": true}}``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, TypeVar
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tracers._streaming import _StreamingCallbackHandler

from langscale.lifecycle import Leases, LifecycleConfig
from langscale.settings import get_settings
from langscale_worker import outgoing
from langscale_worker.context import AttemptRef, attempt_of


def _leases() -> Leases:
    leases = outgoing.current().memory.leases
    if leases is None:  # outside a worker process (a script, a test): read-only use
        settings = get_settings()
        config = LifecycleConfig.from_settings(settings)
        leases = Leases(outgoing.current().redis, config, "history", [])
    return leases


def _same(a: BaseMessage, b: BaseMessage) -> bool:
    return a.type == b.type and a.content == b.content


class ThreadHistory(BaseChatMessageHistory):
    """The chat history of one thread of a tenant, as the current attempt sees it."""

    def __init__(self, thread_id: str, attempt: AttemptRef | None = None) -> None:
        self.thread_id = thread_id
        self.attempt = attempt
        self.tenant = attempt.tenant if attempt else "default"
        self._recorded: list[BaseMessage] = []  # added by this attempt when it started

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        raise NotImplementedError("a thread's history is read with aget_messages()")

    async def aget_messages(self) -> list[BaseMessage]:
        entries = await _leases().history(self.tenant, self.thread_id)
        return messages_from_dict([json.loads(entry.message) for entry in entries])

    async def arecord_input(self, messages: Sequence[BaseMessage]) -> None:
        """Add a run's input messages when it starts (an interrupted run keeps them);
        :meth:`aadd_messages` later skips them when it is given them again."""
        await self.aadd_messages(messages)
        self._recorded = list(messages)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        messages = list(messages)
        recorded = self._recorded
        if len(messages) >= len(recorded) and all(
            _same(a, b) for a, b in zip(messages, recorded, strict=False)
        ):
            messages = messages[len(recorded) :]
        self._recorded = []
        if not messages:
            return
        if self.attempt is None:
            raise RuntimeError("a thread's history is written by a langscale run's attempt")
        await _leases().append_history(
            self.attempt.run_id,
            self.attempt.fence,
            self.tenant,
            self.thread_id,
            [json.dumps(message_to_dict(m)) for m in messages],
        )

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        raise NotImplementedError("a thread's history is written with aadd_messages()")

    def clear(self) -> None:
        raise NotImplementedError("a thread's history ends with its TTL, or by a rollback")


class ThreadMessageHistory(RunnableWithMessageHistory):  # type: ignore[no-redef]
    """``RunnableWithMessageHistory`` on :class:`ThreadHistory`, bound to the attempt that
    runs it (from the run's config), so its writes are fenced."""

    def _merge_configs(self, *configs: RunnableConfig | None) -> RunnableConfig:
        config = super()._merge_configs(*configs)
        configurable = config["configurable"]
        history = configurable["message_history"]
        if isinstance(history, ThreadHistory):
            attempt = attempt_of(config.get("metadata") or {})
            configurable["message_history"] = ThreadHistory(history.thread_id, attempt)
        return config

    async def _aenter_history(
        self, value: dict[str, Any], config: RunnableConfig
    ) -> list[BaseMessage]:
        """The history, read; then the run's new input messages are recorded at once (an
        interrupted run keeps them) — when the whole input is known, streamed runs too."""
        messages = await super()._aenter_history(value, config)
        history = config["configurable"]["message_history"]
        if isinstance(history, ThreadHistory):
            key = self.input_messages_key
            await history.arecord_input(self._get_input_messages(value[key] if key else value))
        return messages


def with_thread_history(
    chain: Runnable, *, input_messages_key: str, history_messages_key: str, **kwargs: Any
) -> Runnable:
    """``chain`` with its thread's history: the history is passed in as
    ``history_messages_key``; the new input (``input_messages_key``) is recorded when the
    history has been read and the output added when it ends."""
    with warnings.catch_warnings():
        # Deprecated in favour of LangGraph's persistence; kept for LangServe-style clients.
        warnings.simplefilter("ignore")
        return ThreadMessageHistory(  # type: ignore[call-arg]
            chain,
            ThreadHistory,
            input_messages_key=input_messages_key,
            history_messages_key=history_messages_key,
            **kwargs,
        )


T = TypeVar("T")

# How a partial answer is marked, in its message's response_metadata.
INTERRUPTED = {"langscale": {"interrupted": True}}


class PartialAnswer(BaseCallbackHandler):
    """The model output an attempt has produced so far: the tokens of its latest model call
    (or, once that call ended, its whole answer)."""

    run_inline = True  # on the attempt's loop, in order: the tokens are the last seen

    def __init__(self) -> None:
        self._calls: dict[UUID, list[str]] = {}

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        text = token if isinstance(token, str) else (chunk.text if chunk is not None else "")
        self._calls.setdefault(run_id, []).append(text)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        tokens = self._calls.pop(run_id, [])  # put last: the latest call to end
        generations = response.generations
        if generations and generations[0]:
            tokens = [generations[0][0].text]
        self._calls[run_id] = tokens

    def text(self) -> str:
        for tokens in reversed(self._calls.values()):
            if tokens:
                return "".join(tokens)
        return ""


class StreamingPartialAnswer(PartialAnswer, _StreamingCallbackHandler):
    """:class:`PartialAnswer` for a run invoked, not streamed: as a streaming handler it
    makes chat models stream their tokens (LangChain's ``_should_stream``), so there is a
    partial answer to keep. Not for ``astream_events``/``astream_log``, whose own streaming
    handler must be the first (and there models stream anyway)."""

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[T]) -> AsyncIterator[T]:
        return output

    def tap_output_iter(self, run_id: UUID, output: Iterator[T]) -> Iterator[T]:
        return output


def partial_message(text: str) -> str | None:
    """The history entry of a partial answer (None when there is none)."""
    if not text:
        return None
    message = AIMessage(content=text, response_metadata=INTERRUPTED)
    return json.dumps(message_to_dict(message))
