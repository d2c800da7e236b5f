from __future__ import annotations

import pytest
from pydantic import ValidationError

from langscale.settings import BUILTIN_PIPELINES, Settings, describe_errors


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LANGSCALE_"):
            monkeypatch.delenv(name)


def test_defaults_serve_the_builtin_pipelines_on_the_fake_provider() -> None:
    settings = Settings()
    assert settings.pipelines == BUILTIN_PIPELINES
    assert settings.llm_provider == "fake"


def test_values_come_from_langscale_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGSCALE_WORKER_CONCURRENCY", "250")
    monkeypatch.setenv("LANGSCALE_QUEUE_NAME", "q2")
    monkeypatch.setenv("LANGSCALE_PIPELINES", "a=pkg.mod:chain, b=pkg.mod:factory")
    settings = Settings()
    assert settings.worker_concurrency == 250
    assert settings.queue_name == "q2"
    assert settings.pipelines == {"a": "pkg.mod:chain", "b": "pkg.mod:factory"}


def test_pipelines_accept_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGSCALE_PIPELINES", '{"x": "m:a"}')
    assert Settings().pipelines == {"x": "m:a"}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LANGSCALE_WORKER_CONCURRENCY", "0"),
        ("LANGSCALE_WORKER_CONCURRENCY", "lots"),
        ("LANGSCALE_LLM_PROVIDER", "anthropic"),
        ("LANGSCALE_PIPELINES", "chat"),
        ("LANGSCALE_PIPELINES", "Bad Name=m:a"),
        ("LANGSCALE_PIPELINES", "v1=m:a"),
        ("LANGSCALE_OPENAI_BASE_URL", "not a url"),
        ("LANGSCALE_JOB_TIMEOUT", "-1"),
    ],
)
def test_invalid_values_are_reported_by_variable_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert variable in describe_errors(raised.value)
