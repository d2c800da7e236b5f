"""Traces across the queue, metrics and log context.

In process: the gateway app (create_app + a test TracerProvider, through httpx's ASGI
transport) and a worker's attempts (claimed, executed and finished through the lifecycle)
on the same Redis, spans in memory. End to end:
gateway and worker as separate processes exporting OTLP/HTTP to a receiver the test runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from langchain_core.runnables import RunnableLambda
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from langscale import logs, metrics, telemetry
from langscale.contract import EventType
from langscale.lifecycle import (
    Leases,
    LifecycleConfig,
    Outcome,
    Retry,
    StaleAttempt,
    Succeeded,
)
from langscale.localredis import LocalRedis
from langscale.redis import create_redis
from langscale.settings import Settings
from langscale_gateway.app import create_app
from langscale_worker import RetriableError, outgoing
from langscale_worker.execute import Runtime, execute
from langscale_worker.process import count_end
from langscale_worker.registry import Pipeline, load_registry

from otlp_receiver import OtlpReceiver
from pipelines_for_tests import TEST_PIPELINES
from support import Stack, wait_until

QUEUE = "langscale-test-observability"


# --- in process ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    return telemetry.create_provider("langscale-test", SimpleSpanProcessor(exporter))


@pytest.fixture(scope="module")
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        queue_name=QUEUE,
        pipelines=TEST_PIPELINES,
        fake_latency=0.01,
        pipeline_cache_ttl=0,
        retry_backoff=0.01,
    )


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = create_redis(settings)
    yield client
    await client.aclose()


def _flaky() -> Pipeline:
    calls = {"n": 0}

    def flaky(value: dict) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RetriableError("provider hiccup")
        return "ok"

    return Pipeline("flaky", "test:flaky", RunnableLambda(flaky, name="flaky"))


class InProcessWorker:
    """A worker's attempts without its loop: claim one run, execute it, finish it."""

    def __init__(self, leases: Leases, runtime: Runtime) -> None:
        self.leases = leases
        self.runtime = runtime

    async def attempt(self, run_id: str) -> Outcome:
        claims = (await self.leases.claim(0, 100, idle=False)).claims
        (claim,) = [c for c in claims if c.run_id == run_id]
        outcome = await execute(claim, self.runtime)
        (applied,) = await self.leases.finish(0, [(claim, outcome)])
        count_end(claim, outcome, applied)  # as the worker process does
        return outcome


@pytest.fixture(scope="module")
async def worker(
    settings: Settings, redis: Redis, provider: TracerProvider
) -> AsyncIterator[InProcessWorker]:
    pipelines = load_registry(settings.pipelines)
    pipelines["flaky"] = _flaky()
    leases = Leases(redis, LifecycleConfig.from_settings(settings), "test-worker", list(pipelines))

    async def publish(run_id: str, fence: str, events: list[tuple[EventType, str]]) -> None:
        if (await leases.append(0, [(run_id, fence, events)]))[0] < 0:
            raise StaleAttempt(run_id)

    outgoing.bind(redis, settings, leases, publish)  # LLM calls' replay and cache here
    await leases.heartbeat([p.definition() for p in pipelines.values()])
    runtime = Runtime(
        settings=settings,
        pipelines=pipelines,
        publish=publish,
        link_trace=leases.link_trace,
        tracer_provider=provider,
    )
    yield InProcessWorker(leases, runtime)


@pytest.fixture(scope="module")
async def gateway(settings: Settings, provider: TracerProvider) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings, tracer_provider=provider)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


async def _submit(client: httpx.AsyncClient, pipeline: str, value: Any) -> str:
    response = await client.post("/v1/runs", json={"pipeline": pipeline, "input": value})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def _job(redis: Redis, settings: Settings, run_id: str) -> dict[str, Any]:
    keyspace = LifecycleConfig.from_settings(settings).keyspace
    stored: dict[str, Any] = json.loads(await redis.hget(keyspace.run(run_id), "job"))
    return stored


def _spans(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_from_http_request_through_the_queue_to_the_llm_call(
    gateway: httpx.AsyncClient,
    worker: InProcessWorker,
    redis: Redis,
    settings: Settings,
    exporter: InMemorySpanExporter,
) -> None:
    run_id = await _submit(gateway, "chat", {"question": "hello"})
    job = await _job(redis, settings, run_id)
    assert set(job["trace_context"]) >= {"traceparent"}
    assert isinstance(await worker.attempt(run_id), Succeeded)

    producer = next(
        s for s in exporter.get_finished_spans() if s.attributes.get("langscale.run.id") == run_id
    )
    spans = _spans(exporter, producer.context.trace_id)
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    assert server.name == "POST /v1/runs"
    assert producer.name == "send chat" and producer.kind is SpanKind.PRODUCER
    assert _parent_id(producer) == server.context.span_id

    consumer = _one(spans, "process chat")
    assert consumer.kind is SpanKind.CONSUMER
    assert _parent_id(consumer) == producer.context.span_id
    assert consumer.parent is not None and consumer.parent.is_remote
    attributes = dict(consumer.attributes or {})
    assert attributes["messaging.system"] == "langscale"
    assert attributes["messaging.destination.name"] == "chat"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == run_id
    assert attributes["langscale.pipeline"] == "chat"
    assert attributes["langscale.run.attempt"] == 1
    assert attributes["langscale.run.queued_seconds"] >= 0

    chain = _one(spans, "chain chat")
    assert _parent_id(chain) == consumer.context.span_id
    llm = _one(spans, "chat fake-chat")
    assert llm.kind is SpanKind.CLIENT
    assert _parent_id(llm) == chain.context.span_id
    llm_attributes = dict(llm.attributes or {})
    assert llm_attributes["gen_ai.operation.name"] == "chat"
    assert llm_attributes["gen_ai.provider.name"] == "fake"
    assert llm_attributes["gen_ai.request.model"] == "fake-chat"
    assert llm_attributes["gen_ai.usage.input_tokens"] > 0
    assert llm_attributes["gen_ai.usage.output_tokens"] > 0
    # LANGSCALE_TRACE_CONTENT is off: no prompt or completion on spans.
    assert "gen_ai.input.messages" not in llm_attributes
    assert "gen_ai.output.messages" not in llm_attributes

    record = (await gateway.get(f"/v1/runs/{run_id}")).json()
    assert record["state"] == "succeeded"


async def test_a_retried_attempt_links_to_the_previous_attempt(
    gateway: httpx.AsyncClient,
    worker: InProcessWorker,
    exporter: InMemorySpanExporter,
) -> None:
    run_id = await _submit(gateway, "flaky", {"x": 1})
    assert isinstance(await worker.attempt(run_id), Retry)
    await asyncio.sleep(0.05)  # the retry's backoff (LANGSCALE_RETRY_BACKOFF)
    assert isinstance(await worker.attempt(run_id), Succeeded)

    attempts = sorted(
        (
            s
            for s in exporter.get_finished_spans()
            if s.kind is SpanKind.CONSUMER
            and (s.attributes or {}).get("langscale.run.id") == run_id
        ),
        key=lambda s: s.start_time or 0,
    )
    assert [(a.attributes or {})["langscale.run.attempt"] for a in attempts] == [1, 2]
    first, second = attempts
    assert first.status.status_code is trace.StatusCode.ERROR
    assert not first.links
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    # Both attempts continue the request's trace.
    assert _parent_id(first) == _parent_id(second)
    assert first.context.trace_id == second.context.trace_id


async def test_embedding_calls_are_spans_of_the_run(
    gateway: httpx.AsyncClient,
    worker: InProcessWorker,
    exporter: InMemorySpanExporter,
    provider: TracerProvider,
) -> None:
    # Embeddings have no LangChain callbacks: their spans use the global provider.
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another test installed a global tracer provider")
    run_id = await _submit(gateway, "embed", {"texts": ["a", "b"]})
    assert isinstance(await worker.attempt(run_id), Succeeded)
    consumer = next(
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.CONSUMER and (s.attributes or {}).get("langscale.run.id") == run_id
    )
    spans = _spans(exporter, consumer.context.trace_id)
    embedding = _one(spans, "embeddings fake-embeddings")
    ancestors = {s.context.span_id: _parent_id(s) for s in spans}
    parent = _parent_id(embedding)
    while parent is not None and parent != consumer.context.span_id:
        parent = ancestors.get(parent)
    assert parent == consumer.context.span_id
    assert (embedding.attributes or {})["gen_ai.operation.name"] == "embeddings"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_gateway_metrics_count_requests_runs_and_read_the_queue(
    gateway: httpx.AsyncClient, worker: InProcessWorker
) -> None:
    await _submit(gateway, "chat", {"question": "counted"})
    response = await gateway.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    route = (("method", "POST"), ("route", "/v1/runs"), ("status", "202"))
    assert samples[("langscale_http_requests_total", route)] >= 1
    assert samples[("langscale_runs_submitted_total", (("pipeline", "chat"),))] >= 1
    assert (
        samples[
            (
                "langscale_http_request_duration_seconds_count",
                (("method", "POST"), ("route", "/v1/runs")),
            )
        ]
        >= 1
    )
    queue = (("pool", "default"), ("queue", QUEUE))  # one pool here: the default
    # This test's run is queued and never picked up (no worker loop here).
    assert samples[("langscale_queue_ready_jobs", queue)] >= 1
    assert samples[("langscale_queue_backlog_jobs", queue)] >= 1
    assert ("langscale_queue_oldest_ready_age_seconds", queue) in samples
    assert ("langscale_queue_deferred_jobs", queue) in samples
    assert ("langscale_queue_in_progress_jobs", queue) in samples
    # The figures are those of /v1/queue.
    figures = (await gateway.get("/v1/queue")).json()
    assert figures["ready"] == samples[("langscale_queue_ready_jobs", queue)]
    # Unknown paths share one label value.
    await gateway.get("/no/such/path/at/all")
    samples = _samples((await gateway.get("/metrics")).text)
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert samples[("langscale_http_requests_total", unmatched)] >= 1


def test_worker_metrics_after_runs() -> None:
    # The in-process runs above went through the worker's instruments.
    samples = _samples(_worker_metrics_text())
    assert samples[("langscale_runs_total", (("pipeline", "chat"), ("state", "succeeded")))] >= 1
    retried = (("pipeline", "flaky"), ("reason", "RetriableError"))
    assert samples[("langscale_run_retries_total", retried)] >= 1
    llm = (("model", "fake-chat"), ("provider", "fake"))
    assert samples[("langscale_llm_call_duration_seconds_count", llm)] >= 1
    assert samples[("langscale_llm_tokens_total", (*llm, ("type", "input")))] >= 1
    assert samples[("langscale_run_queue_wait_seconds_count", (("pipeline", "chat"),))] >= 1
    assert samples[("langscale_run_duration_seconds_count", (("pipeline", "chat"),))] >= 1
    assert samples[("langscale_runs_in_flight", ())] == 0


def _worker_metrics_text() -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.WORKER).decode()


def test_log_lines_carry_trace_span_and_run_ids(provider: TracerProvider) -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("langscale.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        token = logs.RUN_ID.set("run-1")
        with provider.get_tracer("test").start_as_current_span("work") as span:
            logger.info("inside")
        logs.RUN_ID.reset(token)
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in records)
    context = span.get_span_context()
    assert inside["message"] == "inside" and inside["level"] == "info" and inside["time"]
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert inside["run_id"] == "run-1"
    assert "trace_id" not in outside and "run_id" not in outside


# --- end to end: separate processes, OTLP over HTTP --------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path, receiver: OtlpReceiver) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={"pipelines": TEST_PIPELINES, "fake_latency": 0.01},
        environment={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    ).start()
    yield stack
    stack.stop()


def test_one_trace_id_from_the_http_request_to_the_llm_call_across_processes(
    stack: Stack, receiver: OtlpReceiver
) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        response = client.post("/chat/invoke", json={"input": {"question": "traced"}})
        assert response.status_code == 200, response.text
        run_id = response.json()["metadata"]["run_id"]

    def complete() -> list[Any] | None:
        spans = receiver.snapshot()
        consumer = [s for s in spans if s.attributes.get("langscale.run.id") == run_id]
        if not consumer:
            return None
        trace_id = consumer[0].trace_id
        in_trace = [s for s in spans if s.trace_id == trace_id]
        names = {s.name for s in in_trace}
        wanted = {"POST /{pipeline}/invoke", "chat fake-chat", "chain chat"}
        return in_trace if wanted <= names and any(s.kind == 5 for s in in_trace) else None

    spans = wait_until(complete, timeout=20, interval=0.1)
    by_id = {s.span_id: s for s in spans}
    server = next(s for s in spans if s.name == "POST /{pipeline}/invoke")
    assert server.service == "langscale-gateway"
    llm = next(s for s in spans if s.name == "chat fake-chat")
    assert llm.service == "langscale-worker"
    # Walk from the LLM call up to the HTTP request: every hop is in the trace.
    chain = []
    current = llm
    while current.parent_span_id and current.parent_span_id in by_id:
        current = by_id[current.parent_span_id]
        chain.append(current.name)
    assert current is server, chain
    assert chain == ["chain chat", "process chat", "send chat", "POST /{pipeline}/invoke"]
    assert len({s.trace_id for s in spans}) == 1
    # Redis calls made inside the run are in the trace too.
    # (a cluster client's spans carry no db.system: the instrumentation reads it from a
    # connection pool, and a cluster client has one per node)
    assert any(s.attributes.get("db.system") == "redis" or s.name == "EVALSHA" for s in spans)


def test_worker_serves_its_metrics(stack: Stack) -> None:
    worker = stack.workers[0]
    text = httpx.get(f"http://127.0.0.1:{worker.http_port}/metrics", timeout=5).text
    samples = _samples(text)
    assert samples[("langscale_runs_total", (("pipeline", "chat"), ("state", "succeeded")))] >= 1
    assert ("langscale_llm_cache_hits_total", ()) in samples
    assert ("langscale_llm_rate_limit_wait_seconds_total", ()) in samples
    gateway = _samples(httpx.get(f"{stack.url}/metrics", timeout=5).text)
    assert (
        "langscale_queue_backlog_jobs",
        (("pool", "default"), ("queue", "langscale")),
    ) in gateway
