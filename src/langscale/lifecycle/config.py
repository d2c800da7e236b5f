"""The protocol's parameters, taken once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from langscale.keys import Keyspace
from langscale.lifecycle.scripts import Header
from langscale.settings import Settings


@dataclass(frozen=True)
class LifecycleConfig:
    keyspace: Keyspace
    partitions: int
    result_ttl: int  # seconds a run's hash lives (from enqueue, and after it ends)
    stream_ttl: int  # seconds a run's event stream lives after it ends
    stream_max_len: int
    lease_ms: int
    crash_isolation: bool
    max_crashes: int
    max_attempts: int
    admission_max_ready: int
    idempotency_window: int
    heartbeat_stale_ms: int  # a worker without a heartbeat this long is gone
    pipeline_retention_ms: int  # an unserved pipeline is forgotten after this long
    wait_replicas: int = 0  # replicas a new run must reach before it is acknowledged
    thread_ttl: int = 604_800  # seconds a thread and its history live after its last activity
    thread_max_pending: int = 100  # most runs of one thread not ended (enqueue: 429 above)
    history_max_messages: int = 200  # latest messages a thread's history keeps
    thread_log_length: int = 100  # latest run ids GET /v1/threads/{id} shows
    indexed_metadata: tuple[str, ...] = ()  # metadata keys with a listing index of their own

    @classmethod
    def from_settings(cls, settings: Settings) -> LifecycleConfig:
        return cls(
            keyspace=Keyspace(settings.queue_name),
            partitions=settings.redis_partitions,
            result_ttl=settings.result_ttl,
            stream_ttl=min(settings.stream_ttl, settings.result_ttl),
            stream_max_len=settings.stream_max_len,
            lease_ms=int(settings.lease_seconds * 1000),
            crash_isolation=settings.crash_isolation,
            max_crashes=settings.max_crashes,
            max_attempts=settings.max_attempts,
            admission_max_ready=settings.admission_max_ready,
            idempotency_window=settings.idempotency_window,
            heartbeat_stale_ms=int(3 * settings.pipeline_heartbeat * 1000),
            pipeline_retention_ms=int(settings.pipeline_retention * 1000),
            wait_replicas=settings.redis_wait_replicas,
            thread_ttl=settings.thread_ttl,
            thread_max_pending=settings.thread_max_pending,
            history_max_messages=settings.history_max_messages,
            indexed_metadata=tuple(settings.runs_indexed_metadata),
        )

    @property
    def partition_ids(self) -> tuple[int, ...]:
        """The partitions new runs spread over and workers claim from."""
        return self.keyspace.partitions(self.partitions)

    @property
    def header(self) -> Header:
        return Header(self.keyspace, self.result_ttl, self.stream_ttl, self.stream_max_len)
