"""LLM providers chosen by settings: ``fake`` (offline, the default) or ``openai``."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from langscale.settings import Settings


def chat_model(settings: Settings) -> BaseChatModel:
    if settings.llm_provider == "openai":
        from langscale_worker.providers.openai import openai_chat_model

        return openai_chat_model(settings)
    from langscale_worker.providers.fake import FakeChatModel

    return FakeChatModel.from_settings(settings)


def embeddings(settings: Settings) -> Embeddings:
    if settings.llm_provider == "openai":
        from langscale_worker.providers.openai import openai_embeddings

        return openai_embeddings(settings)
    from langscale_worker.providers.fake import FakeEmbeddings

    return FakeEmbeddings.from_settings(settings)
