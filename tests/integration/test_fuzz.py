"""Schema-driven fuzzing of the gateway's HTTP API: no input, however odd, gets a 5xx,
and every answer is one the OpenAPI document names (status and content type).

schemathesis generates requests from the gateway's own OpenAPI document (valid and
invalid bodies from each pipeline's own schemas, paths, query strings and headers) against
the real gateway process. The 5xx the API means are a run that failed inside a pipeline
(the `failing` test pipeline is therefore not served here) and a 504 when an invoke's
wait ran out (documented, and given tiny `?timeout=`s here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from langscale.localredis import LocalRedis

from support import Stack


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "fake_latency": 0.001,
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
    case.call_and_validate(
        checks=[no_unplanned_server_error, status_code_conformance, content_type_conformance],
        timeout=15,
    )


def no_unplanned_server_error(ctx: object, response: object, case: object) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    if status >= 500:
        body = response.json()  # type: ignore[attr-defined]
        assert status == 504 and body["error"]["type"] == "run_timeout", (status, body)
