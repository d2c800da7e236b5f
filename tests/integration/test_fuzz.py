"""Schema-driven fuzzing of the gateway's HTTP API: no input, however odd, gets a 5xx.

schemathesis generates requests from the gateway's own OpenAPI document (valid and
invalid bodies, paths, query strings and headers) against the real gateway process. The
one 5xx the API means is a run that failed inside a pipeline; the `failing` test pipeline
is therefore not served here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from langscale.localredis import LocalRedis

from support import Stack


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "fake_latency": 0.001,
            "invoke_timeout": 2,
            "max_invoke_timeout": 2,
            "log_level": "WARNING",
        },
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{stack.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error], timeout=15)
