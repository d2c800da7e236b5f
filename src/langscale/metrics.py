"""Every Prometheus metric langscale exports, in one place (docs/observability.md).

Two registries, one per service: the gateway's ``/metrics`` serves :data:`GATEWAY`, the
worker's (``langscale_worker.http``) serves :data:`WORKER`; each also carries the standard
process and platform collectors. The dashboard and alert-rule test calls
:func:`metric_names` to check that every name they use is exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from langscale.lifecycle.store import QueueStats

# Seconds: from fast HTTP answers to sync invokes that wait for a run (up to minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Seconds: time queued, run time and LLM calls span milliseconds to the job timeout.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)

GATEWAY = CollectorRegistry(auto_describe=True)
WORKER = CollectorRegistry(auto_describe=True)
for _registry in (GATEWAY, WORKER):
    ProcessCollector(registry=_registry)
    PlatformCollector(registry=_registry)

# --- gateway ------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "langscale_http_requests",
    "HTTP requests answered by the gateway, by route template, method and status.",
    ["route", "method", "status"],
    registry=GATEWAY,
)
HTTP_DURATION = Histogram(
    "langscale_http_request_duration_seconds",
    "Time to answer an HTTP request (to the end of the body; streams count whole).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY,
)
RUNS_SUBMITTED = Counter(
    "langscale_runs_submitted",
    "Runs queued by the gateway, by pipeline.",
    ["pipeline"],
    registry=GATEWAY,
)
ADMISSION_REJECTED = Counter(
    "langscale_admission_rejected",
    "Requests refused with 429 queue_full because the queue was over its ready limit.",
    registry=GATEWAY,
)
QUEUE_READY = Gauge(
    "langscale_queue_ready_jobs",
    "Jobs due and not running (waiting for a worker slot), per worker pool. Same on every "
    "gateway replica: aggregate with max by (queue, pool), then sum by (queue).",
    ["queue", "pool"],
    registry=GATEWAY,
)
QUEUE_DEFERRED = Gauge(
    "langscale_queue_deferred_jobs",
    "Jobs scheduled later (retry backoff).",
    ["queue", "pool"],
    registry=GATEWAY,
)
QUEUE_IN_PROGRESS = Gauge(
    "langscale_queue_in_progress_jobs",
    "Jobs held by a live worker lease.",
    ["queue", "pool"],
    registry=GATEWAY,
)
QUEUE_BACKLOG = Gauge(
    "langscale_queue_backlog_jobs",
    "Ready + in progress: the work the fleet must hold; the autoscaling metric.",
    ["queue", "pool"],
    registry=GATEWAY,
)
QUEUE_OLDEST_AGE = Gauge(
    "langscale_queue_oldest_ready_age_seconds",
    "How long the oldest ready job has waited.",
    ["queue", "pool"],
    registry=GATEWAY,
)
QUEUE_COMPLETED_RATE = Gauge(
    "langscale_queue_completed_per_second",
    "Runs that ended per second over the last 10 s (the drain rate admission uses).",
    ["queue", "pool"],
    registry=GATEWAY,
)
WEBHOOK_DELIVERIES = Counter(
    "langscale_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retried (failed, will retry), failed "
    "(given up after LANGSCALE_WEBHOOK_RETRY_FOR), expired (the run expired first).",
    ["outcome"],
    registry=GATEWAY,
)
WEBHOOK_LATENCY = Histogram(
    "langscale_webhook_delivery_latency_seconds",
    "From a run's end to its webhook's successful delivery (Redis clock).",
    buckets=LATENCY_BUCKETS,
    registry=GATEWAY,
)
WEBHOOK_PENDING = Gauge(
    "langscale_webhook_pending",
    "Webhook deliveries due or being retried (all gateways; read at scrape time).",
    registry=GATEWAY,
)
QUEUE_READ_ERRORS = Counter(
    "langscale_queue_read_errors",
    "Scrapes whose queue reading failed (Redis unreachable); the queue gauges are then absent.",
    registry=GATEWAY,
)
_QUEUE_GAUGES = (
    QUEUE_READY,
    QUEUE_DEFERRED,
    QUEUE_IN_PROGRESS,
    QUEUE_BACKLOG,
    QUEUE_OLDEST_AGE,
    QUEUE_COMPLETED_RATE,
)


def set_queue_gauges(pools: Sequence[QueueStats] | None) -> None:
    """Set the queue gauges from one reading per worker pool; None (reading failed) removes
    them. A pool that is gone is dropped too."""
    for gauge in _QUEUE_GAUGES:
        gauge.clear()
    for stats in pools or ():
        labels = (stats.queue, stats.pool or "")
        QUEUE_READY.labels(*labels).set(stats.ready)
        QUEUE_DEFERRED.labels(*labels).set(stats.deferred)
        QUEUE_IN_PROGRESS.labels(*labels).set(stats.in_progress)
        QUEUE_BACKLOG.labels(*labels).set(stats.backlog)
        QUEUE_OLDEST_AGE.labels(*labels).set(stats.oldest_ready_age_seconds)
        QUEUE_COMPLETED_RATE.labels(*labels).set(stats.completed_per_second)


# --- worker -------------------------------------------------------------------------------
RUNS = Counter(
    "langscale_runs",
    "Runs that ended on this worker, by pipeline and final state.",
    ["pipeline", "state"],
    registry=WORKER,
)
RUN_ERRORS = Counter(
    "langscale_run_errors",
    "Failed runs by pipeline and error type (timeout, run_lost, an exception class...).",
    ["pipeline", "error_type"],
    registry=WORKER,
)
RUN_QUEUE_WAIT = Histogram(
    "langscale_run_queue_wait_seconds",
    "Time from enqueue to the start of a run's first attempt.",
    ["pipeline"],
    buckets=RUN_BUCKETS,
    registry=WORKER,
)
RUN_DURATION = Histogram(
    "langscale_run_duration_seconds",
    "Run time of one attempt on a worker.",
    ["pipeline"],
    buckets=RUN_BUCKETS,
    registry=WORKER,
)
RUNS_IN_FLIGHT = Gauge(
    "langscale_runs_in_flight",
    "Runs executing in this worker process now.",
    registry=WORKER,
)
STALE_WRITES = Counter(
    "langscale_stale_writes",
    "Writes of attempts that Redis refused because another attempt held the run (fencing), "
    "by kind: append, finish, renew, history_partial (an interrupted run's partial answer "
    "too late for its thread's next run).",
    ["kind"],
    registry=WORKER,
)
LEASES_LAPSED = Counter(
    "langscale_leases_lapsed",
    "Runs whose worker's lease lapsed (it died or froze), swept back to the queue by this worker.",
    registry=WORKER,
)
RUN_RETRIES = Counter(
    "langscale_run_retries",
    "Attempts put back on the queue: reason is the error type, or worker_stopping (drain).",
    ["pipeline", "reason"],
    registry=WORKER,
)
VECTOR_POOL_SIZE = Gauge(
    "langscale_vector_store_pool_size",
    "Connections of this worker process's vector store pool (0: a new one per query).",
    registry=WORKER,
)
VECTOR_IN_USE = Gauge(
    "langscale_vector_store_connections_in_use",
    "Vector store connections a query is using now (pooled or not).",
    registry=WORKER,
)
VECTOR_POOL_WAIT = Histogram(
    "langscale_vector_store_pool_wait_seconds",
    "Time a query waited for a free pooled vector store connection.",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=WORKER,
)
VECTOR_CONNECTIONS_OPENED = Counter(
    "langscale_vector_store_connections_opened",
    "Vector store connections opened for one query (an unpooled store, pool size 0).",
    registry=WORKER,
)
VECTOR_QUERIES = Counter(
    "langscale_vector_store_queries",
    "Vector store queries, by outcome (ok, error).",
    ["outcome"],
    registry=WORKER,
)
VECTOR_QUERY_DURATION = Histogram(
    "langscale_vector_store_query_duration_seconds",
    "Time of one vector store query, the wait for a connection included.",
    buckets=LATENCY_BUCKETS,
    registry=WORKER,
)
LLM_CALL_DURATION = Histogram(
    "langscale_llm_call_duration_seconds",
    "Time of one LLM or embeddings call as the pipeline sees it (rate-limit waits included).",
    ["provider", "model"],
    buckets=RUN_BUCKETS,
    registry=WORKER,
)
LLM_TOKENS = Counter(
    "langscale_llm_tokens",
    "Tokens of LLM calls as the provider reported them, by type (input or output).",
    ["provider", "model", "type"],
    registry=WORKER,
)


class OutgoingCollector(Collector):
    """The worker's outgoing-call counters (``outgoing.current().stats``), read at scrape
    time: the hot path keeps plain integer increments."""

    def __init__(self, stats: Callable[[], Any | None]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return list(self._families({}))

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        return list(self._families(stats.snapshot() if stats is not None else {}))

    @staticmethod
    def _families(values: dict[str, Any]) -> Iterator[Metric]:
        limiter = values.get("limiter", {})

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield counter(
            "langscale_llm_provider_calls",
            "LLM calls sent to a provider (not answered from cache or replay).",
            values.get("provider_calls", 0),
        )
        yield counter(
            "langscale_llm_cache_hits",
            "LLM calls answered from the cache.",
            values.get("cache_hits", 0),
        )
        yield counter(
            "langscale_llm_cache_misses",
            "LLM calls of cached pipelines that missed the cache.",
            values.get("cache_misses", 0),
        )
        yield counter(
            "langscale_llm_replays",
            "LLM calls a retried run replayed from an earlier attempt.",
            values.get("replays", 0),
        )
        yield counter(
            "langscale_llm_rate_limited",
            "429 answers from providers.",
            values.get("rate_limited", 0),
        )
        yield counter(
            "langscale_llm_rate_limit_waits",
            "LLM calls that waited for the shared rate-limit budget.",
            limiter.get("waited", 0),
        )
        yield counter(
            "langscale_llm_rate_limit_wait_seconds",
            "Seconds LLM calls waited for the shared rate-limit budget.",
            limiter.get("wait_seconds", 0.0),
        )
        yield counter(
            "langscale_llm_rate_limit_blocks",
            "Times a budget was blocked by a 429 or a provider's rate-limit headers.",
            limiter.get("blocks", 0),
        )
        yield GaugeMetricFamily(
            "langscale_llm_rate_limit_waiting",
            "LLM calls waiting for budget in this process now.",
            value=limiter.get("waiting", 0),
        )


def register_outgoing(stats: Callable[[], Any | None]) -> None:
    """Export the outgoing-call counters on the worker's registry (once per process)."""
    global _outgoing_registered
    if not _outgoing_registered:
        WORKER.register(OutgoingCollector(stats))
        _outgoing_registered = True


_outgoing_registered = False

# Histograms export <name>_bucket, _sum and _count; counters <name>_total.
OUTGOING_METRIC_NAMES = (
    "langscale_llm_provider_calls_total",
    "langscale_llm_cache_hits_total",
    "langscale_llm_cache_misses_total",
    "langscale_llm_replays_total",
    "langscale_llm_rate_limited_total",
    "langscale_llm_rate_limit_waits_total",
    "langscale_llm_rate_limit_wait_seconds_total",
    "langscale_llm_rate_limit_blocks_total",
    "langscale_llm_rate_limit_waiting",
)


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry exports (counters' _total, histograms' suffixes)."""
    names: set[str] = set()
    for family in registry.collect():
        if not family.name.startswith("langscale_"):
            continue
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def metric_names() -> set[str]:
    """Every langscale_* series name either service exports."""
    return exported_names(GATEWAY) | exported_names(WORKER) | set(OUTGOING_METRIC_NAMES)
