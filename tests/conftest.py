"""Shared fixtures: a private redis-server per test module, started on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from langscale.localredis import LocalRedis, start_local_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = start_local_redis(directory=tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")
