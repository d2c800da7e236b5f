"""Real processes for integration tests: gateway and workers on a test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from langscale.localredis import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def sync_client(url: str, **options: Any) -> Any:
    """A synchronous client of the Redis at ``url``: a plain one, or a cluster client for
    a ``redis+cluster://`` URL (for tests that look at Redis directly)."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    from langscale.redis import is_cluster_url, parse_cluster_url

    if is_cluster_url(url):
        parsed = parse_cluster_url(url)
        nodes = [ClusterNode(host, port) for host, port in parsed.nodes]
        return RedisCluster(startup_nodes=nodes, password=parsed.password, **options)
    return redis.Redis.from_url(url, **options)


def faketime(offset: str) -> dict[str, str]:
    """Environment that sets a process's wall clock ``offset`` ("+60s", "-15s") away from
    everyone else's (libfaketime, from its PyPI wheel, via LD_PRELOAD); its monotonic clock
    stays true, as NTP leaves it."""
    import libfaketime

    library = Path(libfaketime.__file__).parent / "vendor/libfaketime/src/libfaketime.so.1"
    return {"LD_PRELOAD": str(library), "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"}


def openai_provider_settings(server_url: str) -> dict[str, str]:
    """Settings of the ``openai`` provider against tests/fakes/openai_server.py."""
    return {
        "llm_provider": "openai",
        "openai_base_url": f"{server_url}/v1",
        "openai_api_key": "sk-test",
        "openai_model": "test-model",
        "openai_embedding_model": "test-embedder",
    }


def langscale_env(redis_url: str, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGSCALE_")}
    env["LANGSCALE_REDIS_URL"] = redis_url
    env["LANGSCALE_LOG_FORMAT"] = "json"
    env["LANGSCALE_PIPELINE_CACHE_TTL"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    # Test pipelines (tests/pipelines_for_tests.py) are importable by workers.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), env.get("PYTHONPATH")]))
    for name, value in settings.items():
        env[f"LANGSCALE_{name.upper()}"] = str(value)
    return env


@dataclass
class Process:
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    http_port: int = 0

    def start(self) -> Process:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def langscale_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "langscale.cli", *args]


@dataclass
class Stack:
    """One gateway and N workers sharing a Redis."""

    redis_url: str
    logs: Path
    settings: dict[str, Any] = field(default_factory=dict)
    # Other environment variables of every process (OTEL_*, ...).
    environment: dict[str, str] = field(default_factory=dict)
    workers: list[Process] = field(default_factory=list)
    gateway: Process | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **overrides: Any) -> dict[str, str]:
        return {
            **langscale_env(self.redis_url, **{**self.settings, **overrides}),
            **self.environment,
        }

    def add_worker(self, environment: dict[str, str] | None = None, **overrides: Any) -> Process:
        """Start one more worker; ``environment``: extra variables of its own (LD_PRELOAD...)."""
        index = len(self.workers)
        overrides.setdefault("worker_http_port", free_port())
        worker = Process(
            langscale_command("worker"),
            {**self.env(**overrides), **(environment or {})},
            self.logs / f"worker-{index}.log",
        ).start()
        worker.http_port = int(overrides["worker_http_port"])
        self.workers.append(worker)
        return worker

    def start(self, workers: int = 1, timeout: float = 60) -> Stack:
        self.port = free_port()
        for _ in range(workers):
            self.add_worker()
        self.start_gateway()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()  # a fixture that fails here never reaches its teardown
            raise
        return self

    def start_gateway(self, environment: dict[str, str] | None = None, **overrides: Any) -> Process:
        """(Re)start the gateway on the stack's port."""
        self.gateway = Process(
            langscale_command("gateway", "--port", str(self.port)),
            {**self.env(**overrides), **(environment or {})},
            self.logs / "gateway.log",
        ).start()
        return self.gateway

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            for process in [self.gateway, *self.workers]:
                if process is not None and not process.alive():
                    raise RuntimeError(f"{process.args} exited:\n{process.output()[-3000:]}")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=1)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json()["workers"] >= len(
                [w for w in self.workers if w.alive()]
            )

        wait_until(ready, timeout, interval=0.1)

    def stop(self) -> None:
        for process in [self.gateway, *self.workers]:
            if process is not None:
                process.stop()
