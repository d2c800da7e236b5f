"""Built-in pipelines, for the demo, the tests and the benchmarks.

Each is a zero-argument factory (the registry calls it once at worker start) that builds a
real LangChain Runnable on the provider chosen by settings.
"""

from __future__ import annotations

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_text_splitters import RecursiveCharacterTextSplitter
from pydantic import BaseModel, Field

from langscale.settings import get_settings
from langscale_worker import providers


def chat() -> Runnable:
    """prompt | chat model | string parser. Input: ``{"question": str}``."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), ("human", "{question}")]
    )
    chain = prompt | providers.chat_model(get_settings()) | StrOutputParser()
    return chain.with_config(run_name="chat")


class SummarizeInput(BaseModel):
    text: str = Field(min_length=1, description="The text to summarize.")
    chunk_size: int = Field(400, ge=50, le=20_000, description="Characters per map chunk.")


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

    async def map_reduce(request: SummarizeInput) -> str:
        splitter = RecursiveCharacterTextSplitter(chunk_size=request.chunk_size, chunk_overlap=0)
        chunks = splitter.split_text(request.text)
        summaries = await map_chain.abatch([{"chunk": chunk} for chunk in chunks])
        return await reduce_chain.ainvoke({"summaries": "\n".join(summaries)})

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
