"""Built-in pipelines, for the demo, the tests and the benchmarks.

Each is a zero-argument factory (the registry calls it once at worker start) that builds a
real LangChain Runnable on the provider chosen by settings.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_text_splitters import RecursiveCharacterTextSplitter
from pydantic import BaseModel, Field

from langscale.settings import get_settings
from langscale_worker import http, providers
from langscale_worker.history import with_thread_history
from langscale_worker.vectorstore import vector_store


def chat() -> Runnable:
    """prompt | chat model | string parser. Input: ``{"question": str}``."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), ("human", "{question}")]
    )
    chain = prompt | providers.chat_model(get_settings()) | StrOutputParser()
    return chain.with_config(run_name="chat")


def chat_with_history() -> Runnable:
    """Chat that remembers its thread: history in Redis, shared by every worker.

    Input ``{"question": str}``; the thread is ``config.configurable.session_id`` (or the
    run's ``thread_id``)."""
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You are a helpful assistant."),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ]
    )
    chain = prompt | providers.chat_model(get_settings()) | StrOutputParser()
    return with_thread_history(
        chain, input_messages_key="question", history_messages_key="history"
    ).with_config(run_name="chat_with_history")


# A summarize run's fan-out is bounded by its schema, so the gateway refuses (422) what
# would need too many map calls: at most MAX_TEXT / MIN_CHUNK = 250 chunks (the splitter
# may cut a little more finely; the map step refuses past MAX_CHUNKS).
SUMMARIZE_MAX_TEXT = 100_000
SUMMARIZE_MIN_CHUNK = 400
SUMMARIZE_MAX_CHUNKS = 500


class SummarizeInput(BaseModel):
    text: str = Field(
        min_length=1, max_length=SUMMARIZE_MAX_TEXT, description="The text to summarize."
    )
    chunk_size: int = Field(
        400, ge=SUMMARIZE_MIN_CHUNK, le=20_000, description="Characters per map chunk."
    )


def summarize() -> Runnable:
    """Map-reduce summary: one concurrent LLM call per chunk, then one to combine."""
    model = providers.chat_model(get_settings())
    parser = StrOutputParser()
    map_chain = (
        ChatPromptTemplate.from_messages([("human", "Summarize briefly:\n{chunk}")])
        | model
        | parser
    )
    reduce_chain = (
        ChatPromptTemplate.from_messages([("human", "Combine these summaries:\n{summaries}")])
        | model
        | parser
    )

    async def map_reduce(request: SummarizeInput, config: RunnableConfig) -> str:
        splitter = RecursiveCharacterTextSplitter(chunk_size=request.chunk_size, chunk_overlap=0)
        chunks = splitter.split_text(request.text)
        if len(chunks) > SUMMARIZE_MAX_CHUNKS:
            raise ValueError(f"{len(chunks)} chunks; at most {SUMMARIZE_MAX_CHUNKS}")
        # The run's max_concurrency (LANGSCALE_RUN_MAX_CONCURRENCY) bounds the map step.
        summaries = await map_chain.abatch([{"chunk": chunk} for chunk in chunks], config=config)
        return await reduce_chain.ainvoke({"summaries": "\n".join(summaries)}, config=config)

    def coerce(value: SummarizeInput | dict) -> SummarizeInput:
        return value if isinstance(value, SummarizeInput) else SummarizeInput.model_validate(value)

    return (
        (RunnableLambda(coerce) | RunnableLambda(map_reduce).with_config(run_name="map_reduce"))
        .with_types(input_type=SummarizeInput, output_type=str)
        .with_config(run_name="summarize")
    )


class EmbedInput(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=2048, description="Texts to embed.")


def embed() -> Runnable:
    """Embeddings of a list of texts. Output: one vector per text, in order."""
    embeddings = providers.embeddings(get_settings())

    async def embed_texts(request: EmbedInput | dict) -> list[list[float]]:
        texts = request.texts if isinstance(request, EmbedInput) else request["texts"]
        return await embeddings.aembed_documents(list(texts))

    return RunnableLambda(embed_texts, name="embed").with_types(
        input_type=EmbedInput, output_type=list[list[float]]
    )


class RagInput(BaseModel):
    question: str = Field(min_length=1, max_length=10_000, description="The question.")


class StoreRetriever(BaseRetriever):
    """Embeds the query (through the process's embedding batching) and searches the store."""

    store: Any  # a langscale_worker.vectorstore.VectorStore
    embeddings: Embeddings
    k: int = 4

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        raise NotImplementedError("the rag pipeline retrieves asynchronously")

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return await self.store.query(await self.embeddings.aembed_query(query), self.k)


def rag() -> Runnable:
    """Retrieval: embed the question, search the vector store, answer from what it found.

    Output ``{"answer": str, "sources": [{"id", "source", "text"}]}``. The store is a Chroma
    server (LANGSCALE_VECTOR_STORE_URL) or the embedded one; fill it with `langscale ingest`."""
    settings = get_settings()
    embeddings = providers.embeddings(settings)
    store = vector_store(settings, embeddings)
    http.add_readiness_check("vector_store", store.check)
    retriever = StoreRetriever(store=store, embeddings=embeddings, k=settings.rag_top_k)
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from this context only.\n\nContext:\n{context}"),
            ("human", "{question}"),
        ]
    )
    answer = prompt | providers.chat_model(settings) | StrOutputParser()

    async def respond(request: RagInput | dict, config: RunnableConfig) -> dict:
        question = request.question if isinstance(request, RagInput) else request["question"]
        documents = await retriever.ainvoke(question, config=config)
        context = "\n\n".join(d.page_content for d in documents)
        text = await answer.ainvoke({"question": question, "context": context}, config=config)
        sources = [
            {"id": d.id, "source": d.metadata.get("source"), "text": d.page_content[:300]}
            for d in documents
        ]
        return {"answer": text, "sources": sources}

    return (
        RunnableLambda(respond, name="rag")
        .with_types(input_type=RagInput, output_type=dict)
        .with_config(run_name="rag")
    )
