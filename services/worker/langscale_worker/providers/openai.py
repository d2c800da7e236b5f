"""The ``openai`` provider: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LiteLLM)."""

from __future__ import annotations

from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import SecretStr

from langscale.settings import Settings


def _base_url(settings: Settings) -> str | None:
    return str(settings.openai_base_url).rstrip("/") if settings.openai_base_url else None


def openai_chat_model(settings: Settings) -> ChatOpenAI:
    # Retries belong to langscale's run policy, not to the client library.
    return ChatOpenAI(
        model=settings.openai_model,
        base_url=_base_url(settings),
        api_key=SecretStr(settings.openai_api_key or "unused"),
        timeout=settings.openai_timeout,
        max_retries=0,
        stream_usage=True,
        # Rate-limit headers let the shared budget back off before the provider says 429.
        include_response_headers=True,
    )


def openai_embeddings(settings: Settings) -> OpenAIEmbeddings:
    return OpenAIEmbeddings(
        model=settings.openai_embedding_model,
        openai_api_base=_base_url(settings),
        openai_api_key=SecretStr(settings.openai_api_key or "unused"),
        request_timeout=settings.openai_timeout,
        max_retries=0,
        check_embedding_ctx_length=False,
    )
