"""Shared fixtures: a private redis-server per test module, started on a free port.

With ``LANGSCALE_TEST_REDIS=cluster`` the same tests run against a private Redis Cluster
(3 masters, 3 replicas; ``make test-cluster``): ``redis_server`` is then a cluster of the
module's own (as its own redis-server would be: processes a module leaves behind cannot
touch the next one's runs), and ``redis`` a cluster client.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from langscale.localredis import LocalCluster, LocalRedis, free_port, start_local_redis
from langscale.redis import create_redis
from langscale.settings import Settings

from support import ROOT, Process, wait_until

ON_CLUSTER = os.environ.get("LANGSCALE_TEST_REDIS", "") == "cluster"

# tests/e2e drives a real Kubernetes cluster: only `make e2e` collects it (LANGSCALE_E2E=1).
collect_ignore_glob = [] if os.environ.get("LANGSCALE_E2E") == "1" else ["e2e/*"]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of 3 masters and 3 replicas for the session."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The module's Redis (``.url``): its own redis-server, or its own cluster."""
    if ON_CLUSTER:
        cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
        yield cluster
        cluster.stop()
        return
    server = start_local_redis(directory=tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: LocalRedis) -> AsyncIterator[Redis]:
    """An async client of the module's Redis, emptied for each test (our own server)."""
    client = (
        create_redis(Settings(redis_url=redis_server.url))
        if ON_CLUSTER
        else Redis.from_url(redis_server.url)
    )
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def client(stack: Any) -> Iterator[httpx.Client]:
    """An HTTP client of the gateway of the module's ``stack`` (a fixture each module that
    uses this one defines, with its own settings)."""
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def openai_server(logs_dir: Path) -> Iterator[str]:
    """A local OpenAI-compatible server (tests/fakes/openai_server.py) for this module."""
    port = free_port()
    server = Process(
        [sys.executable, str(ROOT / "tests" / "fakes" / "openai_server.py"), str(port)],
        env={"PATH": "/usr/bin:/bin"},
        log=logs_dir / "openai.log",
    ).start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/control").status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 30)
    yield url
    server.stop()
