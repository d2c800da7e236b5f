"""Pipelines of the example package: a pipeline is a name bound to a Runnable or a factory."""

from __future__ import annotations

from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel


class ShoutInput(BaseModel):
    text: str


def shout() -> Runnable:
    """Repeat the text in capitals."""  # shown in GET /v1/pipelines
    return RunnableLambda(lambda data: data["text"].upper() + "!").with_types(
        input_type=ShoutInput, output_type=str
    )
