"""Fault tests: real processes, a real Redis, faults provoked for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langscale.localredis import LocalRedis

from pipelines_for_tests import FAULT_PIPELINES
from support import Stack


@pytest.fixture
def stack_factory(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Any]:
    """Stacks of the ``recorded`` pipeline, recording executions in the module's Redis."""
    stacks: list[Stack] = []

    def make(
        redis_url: str | None = None, workers: int = 1, start: bool = True, **settings: Any
    ) -> Stack:
        stack = Stack(
            redis_url or redis_server.url,
            logs_dir,
            settings={"pipelines": FAULT_PIPELINES, "log_level": "WARNING", **settings},
            environment={"TEST_RECORD_URL": redis_server.url},
        )
        stacks.append(stack)
        return stack.start(workers=workers) if start else stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def record_db(redis_server: LocalRedis) -> Iterator[Any]:
    import redis

    with redis.Redis.from_url(redis_server.url) as db:
        db.flushdb()  # our own server: a clean history per test
        yield db
