"""LLM providers chosen by settings: ``fake`` (offline, the default) or ``openai``.

Both come wrapped by :func:`limited` (shared rate limit, cache, replay; embeddings also
batched): docs/outgoing-calls.md. Wrap a model of your own the same way.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from langscale.settings import Settings
from langscale_worker.outgoing import limited

__all__ = ["chat_model", "embeddings", "limited"]


def chat_model(settings: Settings) -> BaseChatModel:
    """The provider's chat model, under langscale's control."""
    model: BaseChatModel = limited(_provider_chat_model(settings))
    return model


def embeddings(settings: Settings) -> Embeddings:
    """The provider's embeddings, under langscale's control, micro-batched per process,
    timed and traced per caller (``tracing.TracedEmbeddings``)."""
    from langscale_worker.outgoing import ManagedEmbeddings
    from langscale_worker.tracing import TracedEmbeddings

    managed: ManagedEmbeddings = limited(_provider_embeddings(settings))
    if settings.embed_batch_wait_ms <= 0:
        return TracedEmbeddings(managed, managed.model_id)
    from langscale_worker.batching import BatchingEmbeddings

    batched = BatchingEmbeddings(
        managed, settings.embed_batch_size, settings.embed_batch_wait_ms / 1000
    )
    return TracedEmbeddings(batched, managed.model_id)


def _provider_chat_model(settings: Settings) -> BaseChatModel:
    if settings.llm_provider == "openai":
        from langscale_worker.providers.openai import openai_chat_model

        return openai_chat_model(settings)
    from langscale_worker.providers.fake import FakeChatModel

    return FakeChatModel.from_settings(settings)


def _provider_embeddings(settings: Settings) -> Embeddings:
    if settings.llm_provider == "openai":
        from langscale_worker.providers.openai import openai_embeddings

        return openai_embeddings(settings)
    from langscale_worker.providers.fake import FakeEmbeddings

    return FakeEmbeddings.from_settings(settings)
