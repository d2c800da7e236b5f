from __future__ import annotations

import pytest
from langchain_core.runnables import Runnable

from langscale.settings import BUILTIN_PIPELINES
from langscale_worker.registry import PipelineLoadError, load_pipeline, load_registry


def test_builtin_pipelines_load_with_schemas_and_descriptions() -> None:
    registry = load_registry(BUILTIN_PIPELINES)
    assert set(registry) == {"chat", "summarize", "embed", "chat_with_history"}
    chat = registry["chat"].definition()
    assert chat.input_schema["required"] == ["question"]
    assert chat.description.startswith("prompt | chat model")
    assert registry["embed"].definition().input_schema["required"] == ["texts"]
    assert registry["chat_with_history"].definition().needs_thread, "its session_id"
    assert not chat.needs_thread


def test_a_runnable_attribute_is_used_as_is() -> None:
    pipeline = load_pipeline("x", "langscale_worker.pipelines:chat")  # factory
    assert isinstance(pipeline.runnable, Runnable)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmodule_xyz:a", "cannot import module"),
        ("langscale_worker.pipelines:nothing", "has no 'nothing'"),
        ("langscale.settings:ENV_PREFIX", "not a LangChain Runnable"),
        ("no_colon", "module:attr"),
    ],
)
def test_bad_targets_fail_with_a_clear_message(target: str, message: str) -> None:
    with pytest.raises(PipelineLoadError, match=message):
        load_registry({"p": target})
