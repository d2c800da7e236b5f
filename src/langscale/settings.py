"""Settings shared by the gateway and the worker, read from ``LANGSCALE_*`` variables.

One definition of every knob: both services import :func:`get_settings`. Invalid values
stop the process at start with a message naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, HttpUrl, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from langscale.limits import RateLimit, parse_names, parse_rate_limits, parse_weights

ENV_PREFIX = "LANGSCALE_"

BUILTIN_PIPELINES: dict[str, str] = {
    "chat": "langscale_worker.pipelines:chat",
    "summarize": "langscale_worker.pipelines:summarize",
    "embed": "langscale_worker.pipelines:embed",
    "chat_with_history": "langscale_worker.pipelines:chat_with_history",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- Redis and the queue -------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL: redis:// or rediss://, or for high availability "
        "redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>], or for a "
        "Redis (or Valkey) Cluster redis+cluster://[[user]:password@]host:port[,host:port...] "
        "(rediss+cluster:// with TLS).",
    )
    queue_name: str = Field(
        "langscale",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Namespace of this deployment's Redis keys and channels, and the `queue` "
        "label of its queue metrics; deployments sharing a Redis use different names.",
    )
    redis_partitions: int = Field(
        1,
        ge=1,
        le=256,
        description="Partitions of the keyspace, each one Redis Cluster hash slot (a run and "
        "its pipeline's queue share one), spread evenly over the slots. 1 on a single Redis; "
        "on a cluster at least 4 per master (raise it freely, lowering strands queued runs).",
    )
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        description="Replicas a new run must reach (Redis WAIT, 1 s) before the gateway "
        "acknowledges it, else 503; workers also wait (at most 1 s) for replicas to have a "
        "claim or an end before acting on it. With Sentinel or a cluster, 1 keeps a failover "
        "from losing accepted runs or running one twice.",
    )
    redis_max_connections: int = Field(
        8,
        ge=2,
        description="Redis connections per process (requests wait for a free one); "
        "stream followers share them. On a cluster: commands in flight per process, so at "
        "most this many connections to each node.",
    )

    # --- runs ----------------------------------------------------------------------------
    job_timeout: float = Field(300.0, gt=0, description="Max run time of one attempt, seconds.")
    result_ttl: int = Field(
        86_400, gt=0, description="How long run state and results stay in Redis, seconds."
    )
    max_invoke_timeout: float = Field(
        600.0,
        gt=0,
        description="Longest a LangServe /invoke or /batch waits for its runs, seconds (as "
        "LangServe, it waits until they end or the client leaves); then it answers 504 "
        "naming the runs, which go on. Per request ?timeout= may only lower it.",
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
        description="Most events kept in one run's stream; older ones are trimmed, and a "
        "reader who had not read them gets a gap event.",
    )
    stream_ttl: int = Field(
        3_600,
        gt=0,
        description="How long a run's event stream stays after the run ends, seconds (at "
        "most the result TTL); later readers get the end from the run's state.",
    )
    runs_indexed_metadata: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Metadata keys with a listing index of their own, comma separated: GET "
        "/v1/runs?metadata=key=value on them reads only the matching runs (other keys are "
        "filtered while reading the tenant's index). Each costs ~100 bytes of Redis per run "
        "that has it.",
    )
    disconnect_policy: Literal["cancel", "continue"] = Field(
        "cancel",
        description="What a client going away from a sync invoke or a stream does to its "
        "runs (per request: ?on_disconnect=).",
    )

    # --- threads (conversations) and their chat history ----------------------------------
    thread_ttl: int = Field(
        604_800,
        gt=0,
        description="How long a thread (its run list and chat history) stays after its last "
        "run or message, seconds.",
    )
    thread_max_pending: int = Field(
        100,
        ge=1,
        description="Most runs of one thread that have not ended; an enqueue beyond it is "
        "refused with 429 thread_full.",
    )
    history_max_messages: int = Field(
        200,
        ge=2,
        description="Latest chat messages a thread's history keeps (older ones are dropped).",
    )

    # --- retrieval (the rag pipeline, langscale ingest) ----------------------------------
    vector_store_url: str = Field(
        "",
        description="A Chroma server's URL (http://host:8000) for the rag pipeline and "
        "langscale ingest; empty: the embedded store in LANGSCALE_VECTOR_STORE_PATH.",
    )
    vector_store_path: Path = Field(
        Path(".langscale/vectors.json"),
        description="File of the embedded vector store (no URL): written by langscale ingest, "
        "read by every worker on this machine.",
    )
    vector_store_collection: str = Field(
        "langscale",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$",
        description="The Chroma collection of the rag pipeline's documents.",
    )
    vector_store_pool_size: int = Field(
        5,
        ge=0,
        description="Connections to the vector store per worker process, shared by its runs "
        "(0: a new connection per query).",
    )
    vector_store_timeout: float = Field(
        10.0, gt=0, description="Timeout of one vector store request, seconds."
    )
    rag_top_k: int = Field(
        4, ge=1, le=100, description="Documents the rag pipeline retrieves per question."
    )

    # --- worker --------------------------------------------------------------------------
    worker_concurrency: int = Field(
        100, gt=0, description="Runs one worker process executes at once."
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
    pipeline_timeouts: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="Per-pipeline job timeout as name=seconds, comma separated; others use "
        "LANGSCALE_JOB_TIMEOUT.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="Attempts of a run on retriable errors (and on worker deaths when crash "
        "isolation is off).",
    )
    crash_isolation: bool = Field(
        True,
        description="Runs whose worker died become suspects and run alone until one proves "
        "guilty, so a crash counts only against the run that caused it.",
    )
    max_crashes: int = Field(
        2, ge=1, description="Times a run may kill its worker (running alone) before it fails."
    )
    retry_backoff: float = Field(
        1.0, gt=0, description="First retry delay, seconds; doubles each attempt, with jitter."
    )
    retry_backoff_max: float = Field(60.0, gt=0, description="Longest retry delay, seconds.")
    lease_seconds: float = Field(
        10.0,
        gt=0,
        description="A worker's hold on a running job, renewed every third of it; a job of "
        "a worker that died is taken by another within this time.",
    )
    drain_timeout: float = Field(
        60.0,
        ge=0,
        description="On SIGTERM a worker takes no new job and lets running ones finish for "
        "this long, then puts the rest back on the queue and exits.",
    )
    worker_http_port: int = Field(
        9101, ge=0, le=65535, description="Worker's /healthz and /metrics port (0: off)."
    )
    worker_pool: str = Field(
        "default",
        pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        description="The worker pool this worker belongs to (one Deployment of workers "
        "serving a set of pipelines); queue figures and autoscaling metrics are per pool.",
    )
    pipeline_heartbeat: float = Field(
        10.0, gt=0, description="How often a worker republishes pipeline definitions, seconds."
    )
    pipeline_retention: float = Field(
        3_600.0,
        gt=0,
        description="How long a pipeline no live worker serves stays known (its runs wait "
        "queued, e.g. for workers scaled to zero), seconds; then new runs are 404 and its "
        "queued runs fail with pipeline_unavailable.",
    )
    run_max_concurrency: int = Field(
        16,
        ge=1,
        description="Most concurrent steps (LLM calls of a map step) one run may have; a "
        "client's config.max_concurrency can only lower it.",
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

    # --- outgoing LLM calls (docs/outgoing-calls.md) -------------------------------------
    llm_rate_limits: Annotated[dict[str, RateLimit], NoDecode] = Field(
        default_factory=dict,
        description="Shared budgets as provider/model=rpm:tpm, comma separated (or JSON); "
        "provider/* and * match any model. Empty: no limit.",
    )
    llm_rate_window: float = Field(
        60.0, gt=0, description="Period the rpm/tpm numbers count over, seconds."
    )
    llm_rate_burst: float = Field(
        0.01, ge=0, le=1, description="Share of a budget that may go at once (at least 1)."
    )
    llm_rate_lookahead: float = Field(
        0.5, gt=0, description="How far ahead a worker reserves budget slots, seconds."
    )
    llm_rate_block_max: float = Field(
        60.0,
        gt=0,
        description="Longest a provider's 429 or rate-limit headers may block a budget, seconds.",
    )
    llm_rate_429_retries: int = Field(
        2, ge=0, description="Retries of a call the provider answered 429, after the backoff."
    )
    llm_tenant_weights: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="Tenant shares of a budget as tenant=weight (1)."
    )
    llm_cache_pipelines: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Pipelines whose LLM answers are cached."
    )
    llm_cache_ttl: int = Field(3600, gt=0, description="Life of a cached LLM answer, seconds.")
    llm_replay: bool = Field(
        True, description="A retried run replays the LLM calls its earlier attempts finished."
    )
    embed_batch_size: int = Field(
        256, gt=0, description="Most texts in one batched embeddings call."
    )
    embed_batch_wait_ms: float = Field(
        5.0, ge=0, description="Longest wait to fill an embeddings batch, ms (0: no batching)."
    )

    # --- logs ----------------------------------------------------------------------------
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one object per line; text: for people (make run)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")

    # --- traces (docs/observability.md; the exporter is set by the standard OTEL_* vars) --
    trace_content: bool = Field(
        False,
        description="Record prompts and completions on LLM spans (they may hold personal "
        "data); off: only models, token counts and timings.",
    )

    # --- gateway -------------------------------------------------------------------------
    pipeline_cache_ttl: float = Field(
        2.0, ge=0, description="How long the gateway caches pipeline definitions, seconds."
    )
    admission_max_ready: int = Field(
        10_000,
        ge=0,
        description="Queue ready depth above which new runs are refused with 429 (0: no limit).",
    )
    idempotency_window: int = Field(
        86_400, gt=0, description="How long an Idempotency-Key maps to its run, seconds."
    )
    max_input_depth: int = Field(
        64,
        ge=1,
        le=500,
        description="Deepest nesting of arrays and objects accepted in a run's input, config "
        "and metadata (deeper: 422).",
    )
    gateway_drain_timeout: float = Field(
        25.0,
        ge=0,
        description="On SIGTERM a gateway takes no new connection and lets requests and "
        "streams in flight go on this long, then ends the streams with a resumable marker; "
        "seconds (the chart's terminationGracePeriodSeconds leaves a margin above it).",
    )

    # --- webhooks (docs/clients.md) ------------------------------------------------------
    webhook_secrets: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Signing secrets of webhooks per tenant, tenant=whsec_<base64>, comma "
        "separated (or JSON); * is every other tenant's. A tenant without one cannot ask "
        "for webhooks (422).",
    )
    webhook_default_urls: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="A tenant's webhook for runs submitted without one, tenant=url, comma "
        "separated (or JSON); * is every other tenant's.",
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Private, loopback or link-local webhook destinations that are allowed "
        "anyway (host names or CIDRs, comma separated); every other such one is refused at "
        "submit (SSRF).",
    )
    webhook_retry_for: float = Field(
        86_400.0,
        gt=0,
        description="How long a webhook is retried (exponential backoff from 1 s to 10 min) "
        "after its run ended, seconds (at most the result TTL: the delivery is read from "
        "the run).",
    )
    webhook_timeout: float = Field(10.0, gt=0, description="HTTP timeout of one webhook POST.")
    webhook_concurrency: int = Field(
        32, ge=1, description="Webhook deliveries one gateway process makes at once."
    )

    # --- authentication ------------------------------------------------------------------
    auth_enabled: bool = Field(
        False, description="Require an API key (off for local use, and loudly logged)."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="API keys as sha256hex:tenant[:admin], comma separated (see "
        "`langscale hash-key`).",
    )
    api_keys_file: Path | None = Field(
        None, description="File of API keys, one sha256hex:tenant[:admin] per line."
    )
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per minute per API key, over all gateways (0: none)."
    )

    # --- deployment (issue 12) -----------------------------------------------------------
    worker_http_host: str = Field(
        "0.0.0.0",
        min_length=1,
        description="Address the worker's /healthz and /metrics server listens on: 0.0.0.0 "
        "(IPv4) or :: (IPv6-only clusters).",
    )
    api_keys_reload_interval: float = Field(
        5.0,
        ge=0,
        description="How often the gateway checks LANGSCALE_API_KEYS_FILE for changes and "
        "reloads it, seconds (0: read once at start). Rotating keys needs no restart.",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        from langscale.redis import URL_SCHEMES, is_cluster_url, parse_cluster_url

        scheme = value.partition("://")[0] if "://" in value else ""
        if scheme not in URL_SCHEMES:
            raise ValueError(f"expected a URL starting with {', '.join(URL_SCHEMES)}://")
        if is_cluster_url(value):
            parse_cluster_url(value)
        return value

    @field_validator("pipelines", mode="before")
    @classmethod
    def _parse_pipelines(cls, value: object) -> object:
        """Accept ``name=module:attr,...`` or a JSON object."""
        parsed = _parse_mapping(value, "name=module:attr")
        if isinstance(parsed, dict) and not all(":" in str(v) for v in parsed.values()):
            raise ValueError("expected name=module:attr")
        return parsed

    @field_validator("llm_rate_limits", mode="before")
    @classmethod
    def _parse_rate_limits(cls, value: object) -> object:
        return parse_rate_limits(value)

    @field_validator("llm_tenant_weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: object) -> object:
        return parse_weights(value)

    @field_validator("webhook_secrets", "webhook_default_urls", mode="before")
    @classmethod
    def _parse_tenant_map(cls, value: object) -> object:
        return _parse_mapping(value, "tenant=value")

    @field_validator(
        "webhook_allowed_hosts", "runs_indexed_metadata", "llm_cache_pipelines", mode="before"
    )
    @classmethod
    def _parse_name_lists(cls, value: object) -> object:
        return parse_names(value)

    @field_validator("pipeline_timeouts", mode="before")
    @classmethod
    def _parse_timeouts(cls, value: object) -> object:
        return _parse_mapping(value, "name=seconds")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

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

    def timeout_for(self, pipeline: str) -> float:
        return self.pipeline_timeouts.get(pipeline, self.job_timeout)

    @property
    def longest_job_timeout(self) -> float:
        return max([self.job_timeout, *self.pipeline_timeouts.values()])


def _parse_mapping(value: object, form: str) -> object:
    """``a=b,c=d`` or a JSON object, for settings that map names to values. A name given
    twice is refused: one of the two would be dropped silently."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text, object_pairs_hook=_unique_pairs)
    parsed: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(f"expected {form}, got {item!r}")
        if name.strip() in parsed:
            raise ValueError(f"{name.strip()!r} is given twice")
        parsed[name.strip()] = target.strip()
    return parsed


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"{name!r} is given twice")
        result[name] = value
    return result


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
