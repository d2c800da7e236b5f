"""Spans and LLM metrics for what runs inside a run: the chain, LLM calls, tools, embeddings.

:class:`LangChainTelemetry` is a LangChain callback handler that ``jobs.execute`` puts in
each run's config. It times every chat/LLM call for ``langscale_llm_call_duration_seconds``
and counts tokens (always), and, when tracing is on, opens spans with the GenAI semantic
conventions: one for the run's root chain, one per LLM call (``chat <model>``) and per tool
call, each the child of its nearest spanned LangChain ancestor; the root chain's parent is
the worker's CONSUMER span. Prompts and completions go on spans only with
``LANGSCALE_TRACE_CONTENT=true``.

Embeddings have no LangChain callbacks: :class:`TracedEmbeddings` (applied by
``providers.embeddings``) does the same for them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from langscale import metrics, telemetry

# Longest prompt or completion text recorded on a span (with LANGSCALE_TRACE_CONTENT).
MAX_CONTENT_CHARS = 8192


@dataclass
class _Run:
    context: otel_context.Context  # what children of this LangChain run attach to
    span: trace.Span | None = None
    started: float = 0.0
    provider: str = ""
    model: str = ""
    is_llm: bool = False


def _provider_model(
    metadata: dict[str, Any] | None, serialized: dict[str, Any] | None, kwargs: dict[str, Any]
) -> tuple[str, str]:
    metadata = metadata or {}
    params = kwargs.get("invocation_params") or {}
    provider = metadata.get("ls_provider") or params.get("_type") or "unknown"
    model = (
        metadata.get("ls_model_name")
        or params.get("model_name")
        or params.get("model")
        or (serialized or {}).get("name")
        or "unknown"
    )
    return str(provider), str(model)


def _messages_json(messages: Sequence[BaseMessage]) -> str:
    items = [{"role": m.type, "content": m.text} for m in messages]
    return json.dumps(items, ensure_ascii=False)[:MAX_CONTENT_CHARS]


class LangChainTelemetry(BaseCallbackHandler):
    """Per run: LLM call metrics always; spans when ``tracer`` records."""

    # Called in the caller's task (no executor hop): cheap, and ordered with the run.
    run_inline = True

    def __init__(self, tracer: trace.Tracer, trace_content: bool = False) -> None:
        self.tracer = tracer
        self.trace_content = trace_content
        # The context current when the run began: its span (the CONSUMER span) is the
        # parent of the root chain.
        self.root_context = otel_context.get_current()
        self.tracing = trace.get_current_span().is_recording()
        self._runs: dict[UUID, _Run] = {}

    # Untraced, only LLM calls matter (their metrics): LangChain then skips this handler
    # for every chain step, tool, retriever and agent event of the run.
    @property
    def ignore_chain(self) -> bool:
        return not self.tracing

    @property
    def ignore_agent(self) -> bool:
        return not self.tracing

    @property
    def ignore_retriever(self) -> bool:
        return not self.tracing

    @property
    def ignore_retry(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    # --- helpers ------------------------------------------------------------------------
    def _parent(self, parent_run_id: UUID | None) -> otel_context.Context:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        return parent.context if parent is not None else self.root_context

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> _Run:
        parent = self._parent(parent_run_id)
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        run = _Run(context=trace.set_span_in_context(span, parent), span=span)
        self._runs[run_id] = run
        return run

    def _end(self, run_id: UUID, error: BaseException | None = None) -> _Run | None:
        run = self._runs.pop(run_id, None)
        if run is not None and run.span is not None:
            if error is not None:
                run.span.set_attribute("error.type", type(error).__name__)
                run.span.record_exception(error)
                run.span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
            run.span.end()
        return run

    # --- chains -------------------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.tracing:
            return
        if parent_run_id is None:  # the pipeline itself
            name = kwargs.get("name") or (serialized or {}).get("name") or "chain"
            self._start(
                run_id,
                None,
                f"chain {name}",
                SpanKind.INTERNAL,
                {"langscale.chain.name": str(name)},
            )
        else:  # inner steps: no span of their own; their children attach to the nearest
            self._runs[run_id] = _Run(context=self._parent(parent_run_id))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)

    # --- LLM calls ----------------------------------------------------------------------
    def _llm_start(
        self,
        operation: str,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        kwargs: dict[str, Any],
        content: str | None,
    ) -> None:
        provider, model = _provider_model(kwargs.get("metadata"), serialized, kwargs)
        if self.tracing:
            params = kwargs.get("invocation_params") or {}
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": provider,
                "gen_ai.system": provider,
                "gen_ai.request.model": model,
            }
            for key, attribute in (
                ("temperature", "gen_ai.request.temperature"),
                ("max_tokens", "gen_ai.request.max_tokens"),
                ("top_p", "gen_ai.request.top_p"),
            ):
                if isinstance(params.get(key), int | float):
                    attributes[attribute] = params[key]
            if content is not None and self.trace_content:
                attributes["gen_ai.input.messages"] = content
            run = self._start(
                run_id, parent_run_id, f"{operation} {model}", SpanKind.CLIENT, attributes
            )
        else:
            run = _Run(context=self.root_context)
            self._runs[run_id] = run
        run.started = time.perf_counter()
        run.provider, run.model, run.is_llm = provider, model, True

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        content = _messages_json(messages[0]) if self.trace_content and messages else None
        self._llm_start("chat", serialized, run_id, parent_run_id, kwargs, content)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        content = json.dumps(prompts)[:MAX_CONTENT_CHARS] if self.trace_content else None
        self._llm_start("text_completion", serialized, run_id, parent_run_id, kwargs, content)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        input_tokens, output_tokens, response_model, finish = _usage(response)
        if input_tokens:
            metrics.LLM_TOKENS.labels(run.provider, run.model, "input").inc(input_tokens)
        if output_tokens:
            metrics.LLM_TOKENS.labels(run.provider, run.model, "output").inc(output_tokens)
        if run.span is not None:
            span = run.span
            if input_tokens is not None:
                span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
            if output_tokens is not None:
                span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
            if response_model:
                span.set_attribute("gen_ai.response.model", response_model)
            if finish:
                span.set_attribute("gen_ai.response.finish_reasons", finish)
            if self.trace_content:
                texts = [g.text for gens in response.generations for g in gens]
                output = [{"role": "assistant", "content": text} for text in texts]
                text = json.dumps(output, ensure_ascii=False)[:MAX_CONTENT_CHARS]
                span.set_attribute("gen_ai.output.messages", text)
        self._llm_end(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._llm_end(run_id, error)

    def _llm_end(self, run_id: UUID, error: BaseException | None = None) -> None:
        run = self._end(run_id, error)
        if run is not None and run.is_llm:
            metrics.LLM_CALL_DURATION.labels(run.provider, run.model).observe(
                time.perf_counter() - run.started
            )

    # --- tools and retrievers -----------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        if not self.tracing:
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": str(name)}
        self._start(run_id, parent_run_id, f"execute_tool {name}", SpanKind.INTERNAL, attributes)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        self._end(run_id)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        self._end(run_id, error)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> Any:
        if not self.tracing:
            return
        name = kwargs.get("name") or (serialized or {}).get("name") or "retriever"
        attributes = {"gen_ai.operation.name": "retrieval", "langscale.retriever.name": name}
        self._start(run_id, parent_run_id, f"retrieval {name}", SpanKind.INTERNAL, attributes)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        self._end(run_id)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        self._end(run_id, error)


def _usage(response: LLMResult) -> tuple[int | None, int | None, str | None, list[str]]:
    """Input and output tokens, response model and finish reasons of an LLM result."""
    input_tokens = output_tokens = None
    model = None
    finish: list[str] = []
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if usage:
                input_tokens = (input_tokens or 0) + int(usage.get("input_tokens", 0))
                output_tokens = (output_tokens or 0) + int(usage.get("output_tokens", 0))
            meta = getattr(message, "response_metadata", None) or {}
            model = model or meta.get("model_name") or meta.get("model")
            reason = meta.get("finish_reason") or (generation.generation_info or {}).get(
                "finish_reason"
            )
            if reason:
                finish.append(str(reason))
    if input_tokens is None:  # LLMs that report usage only in llm_output (OpenAI style)
        usage = (response.llm_output or {}).get("token_usage") or {}
        if usage:
            input_tokens = int(usage.get("prompt_tokens", 0))
            output_tokens = int(usage.get("completion_tokens", 0))
    return input_tokens, output_tokens, model, finish


class TracedEmbeddings(Embeddings):
    """Embeddings calls timed for ``langscale_llm_call_duration_seconds`` and, when tracing
    is on, spanned (``embeddings <model>``) in the calling run's trace."""

    def __init__(self, inner: Embeddings, model_id: str) -> None:
        self.inner = inner
        provider, _, model = model_id.partition("/")
        self.provider = provider or "unknown"
        self.model = model or "unknown"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        started = time.perf_counter()
        attributes: dict[str, str | int] = {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": self.provider,
            "gen_ai.system": self.provider,
            "gen_ai.request.model": self.model,
            "langscale.embeddings.inputs": len(texts),
        }
        try:
            with telemetry.get_tracer().start_as_current_span(
                f"embeddings {self.model}", kind=SpanKind.CLIENT, attributes=attributes
            ) as span:
                vectors = await self.inner.aembed_documents(texts)
                if vectors and span.is_recording():
                    span.set_attribute("gen_ai.embeddings.dimension.count", len(vectors[0]))
                return vectors
        finally:
            metrics.LLM_CALL_DURATION.labels(self.provider, self.model).observe(
                time.perf_counter() - started
            )
