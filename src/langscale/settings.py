"""Settings shared by the gateway and the worker, read from ``LANGSCALE_*`` variables.

One definition of every knob: both services import :func:`get_settings`. Invalid values
stop the process at start with a message naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, HttpUrl, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "LANGSCALE_"

BUILTIN_PIPELINES: dict[str, str] = {
    "chat": "langscale_worker.pipelines:chat",
    "summarize": "langscale_worker.pipelines:summarize",
    "embed": "langscale_worker.pipelines:embed",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- Redis and the queue -------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis connection URL.")
    queue_name: str = Field(
        "langscale:queue", min_length=1, description="Name of the arq queue (a sorted set)."
    )

    # --- runs ----------------------------------------------------------------------------
    job_timeout: float = Field(300.0, gt=0, description="Max run time of one attempt, seconds.")
    result_ttl: int = Field(
        86_400, gt=0, description="How long run state and results stay in Redis, seconds."
    )
    invoke_timeout: float = Field(
        30.0,
        gt=0,
        description="How long a sync invoke waits for the result before answering 202 with "
        "the run id (per request: ?timeout=).",
    )
    max_invoke_timeout: float = Field(
        300.0, gt=0, description="Upper bound for a per-request ?timeout=, seconds."
    )
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body the gateway accepts (413 above)."
    )
    max_batch_size: int = Field(
        100, gt=0, description="Largest number of inputs in one /batch call (422 above)."
    )

    stream_max_len: int = Field(
        10_000,
        gt=0,
        description="Most events kept in one run's stream (older ones are trimmed).",
    )
    disconnect_policy: Literal["cancel", "continue"] = Field(
        "cancel",
        description="What a client going away from a sync invoke or a stream does to its "
        "runs (per request: ?on_disconnect=).",
    )

    # --- worker --------------------------------------------------------------------------
    worker_concurrency: int = Field(
        100, gt=0, description="Runs one worker process executes at once (arq max_jobs)."
    )
    poll_interval: float = Field(
        0.5,
        gt=0,
        description="Fallback poll of the queue when no wake-up arrives, seconds. New work "
        "wakes workers at once through Redis pub/sub.",
    )
    pipelines: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(BUILTIN_PIPELINES),
        description="Pipelines as name=module:attr, comma separated (or a JSON object). "
        "The attr is a Runnable or a factory returning one.",
    )
    pipeline_heartbeat: float = Field(
        10.0, gt=0, description="How often a worker republishes pipeline definitions, seconds."
    )

    # --- LLM providers -------------------------------------------------------------------
    llm_provider: Literal["fake", "openai"] = Field("fake", description="fake or openai.")
    fake_latency: float = Field(
        0.05, ge=0, description="Fake LLM latency per call, seconds (median if sigma > 0)."
    )
    fake_latency_sigma: float = Field(
        0.0, ge=0, description="Sigma of a lognormal fake latency; 0 means fixed latency."
    )
    fake_tokens_per_second: float = Field(
        200.0, gt=0, description="Rate at which the fake model streams tokens."
    )
    fake_embedding_dimensions: int = Field(16, gt=0, description="Size of fake embeddings.")
    openai_base_url: HttpUrl | None = Field(
        None, description="Base URL of an OpenAI-compatible API (None: OpenAI's own)."
    )
    openai_api_key: str = Field("", description="API key for the openai provider.")
    openai_model: str = Field("gpt-4o-mini", description="Chat model for the openai provider.")
    openai_embedding_model: str = Field(
        "text-embedding-3-small", description="Embedding model for the openai provider."
    )
    openai_timeout: float = Field(60.0, gt=0, description="HTTP timeout of one LLM call.")

    # --- logs ----------------------------------------------------------------------------
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per line; text: for people (make run)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")

    # --- gateway -------------------------------------------------------------------------
    pipeline_cache_ttl: float = Field(
        2.0, ge=0, description="How long the gateway caches pipeline definitions, seconds."
    )

    @field_validator("pipelines", mode="before")
    @classmethod
    def _parse_pipelines(cls, value: object) -> object:
        """Accept ``name=module:attr,...`` or a JSON object."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("{"):
            import json

            return json.loads(text)
        parsed: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, target = item.partition("=")
            if not sep or not name.strip() or ":" not in target:
                raise ValueError(f"expected name=module:attr, got {item!r}")
            parsed[name.strip()] = target.strip()
        return parsed

    @field_validator("pipelines")
    @classmethod
    def _check_pipeline_names(cls, value: dict[str, str]) -> dict[str, str]:
        from langscale.contract import PIPELINE_NAME_PATTERN, RESERVED_PIPELINE_NAMES

        for name in value:
            if not PIPELINE_NAME_PATTERN.fullmatch(name):
                raise ValueError(
                    f"pipeline name {name!r} must match {PIPELINE_NAME_PATTERN.pattern}"
                )
            if name in RESERVED_PIPELINE_NAMES:
                raise ValueError(f"pipeline name {name!r} is reserved by the gateway")
        if not value:
            raise ValueError("at least one pipeline is required")
        return value


def describe_errors(error: ValidationError) -> str:
    """A message naming the environment variable behind each invalid setting."""
    lines = ["invalid langscale settings:"]
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        lines.append(f"  {ENV_PREFIX}{field.upper()}: {item['msg']}")
    return "\n".join(lines)


def load_settings() -> Settings:
    """Settings for a process entry point: exit with a clear message when invalid."""
    try:
        return Settings()
    except ValidationError as error:
        sys.stderr.write(describe_errors(error) + "\n")
        raise SystemExit(2) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
