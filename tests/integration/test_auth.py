"""API keys, tenants, per-key rate limits, idempotency and operator routes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable

from langscale.localredis import LocalRedis

from pipelines_for_tests import TEST_PIPELINES
from support import Stack, wait_until

KEYS = {"a": "key-of-tenant-a", "b": "key-of-tenant-b", "ops": "key-of-ops", "c": "key-c"}
RATE_LIMIT = 40


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    keys_file = logs_dir / "api-keys"
    keys_file.write_text(f"# mounted from a Secret\n{sha(KEYS['ops'])}:ops:admin\n")
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "pipelines": TEST_PIPELINES,
            "fake_latency": 0.01,
            "auth_enabled": "true",
            "api_keys": f"{sha(KEYS['a'])}:a,{sha(KEYS['b'])}:b,{sha(KEYS['c'])}:c",
            "api_keys_file": keys_file,
            "rate_limit_per_minute": RATE_LIMIT,
        },
    ).start()
    yield stack
    stack.stop()


def client_for(stack: Stack, who: str | None, header: str = "bearer") -> httpx.Client:
    headers = {}
    if who is not None:
        key = KEYS[who]
        headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
    return httpx.Client(base_url=stack.url, headers=headers, timeout=30)


@pytest.fixture
def a(stack: Stack) -> Iterator[httpx.Client]:
    with client_for(stack, "a") as client:
        yield client


@pytest.fixture
def b(stack: Stack) -> Iterator[httpx.Client]:
    with client_for(stack, "b", header="x-api-key") as client:
        yield client


@pytest.fixture
def ops(stack: Stack) -> Iterator[httpx.Client]:
    with client_for(stack, "ops") as client:
        yield client


def run(client: httpx.Client, value: Any, pipeline: str = "chat", **headers: str) -> httpx.Response:
    return client.post("/v1/runs", json={"pipeline": pipeline, "input": value}, headers=headers)


def test_missing_or_wrong_key_is_401(stack: Stack) -> None:
    with client_for(stack, None) as anonymous:
        response = run(anonymous, {"question": "x"})
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/v1/pipelines").status_code == 401
        response = anonymous.post(
            "/chat/invoke", json={"input": {}}, headers={"X-API-Key": "guess"}
        )
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_api_key"
        # Probes, the queue figures and the API description stay open.
        for path in ("/healthz", "/readyz", "/v1/queue", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path


def test_a_tenant_sees_only_its_own_runs(a: httpx.Client, b: httpx.Client) -> None:
    run_id = run(a, {"question": "mine"}).json()["run_id"]
    wait_until(lambda: a.get(f"/v1/runs/{run_id}").json()["state"] == "succeeded", 15)
    assert a.get(f"/v1/runs/{run_id}").json()["tenant"] == "a"
    for response in (
        b.get(f"/v1/runs/{run_id}"),
        b.get(f"/v1/runs/{run_id}/stream"),
        b.post(f"/v1/runs/{run_id}/cancel"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "run_not_found"


def test_remote_runnable_with_a_key(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat", headers={"Authorization": f"Bearer {KEYS['b']}"})
    assert chat.invoke({"question": "keyed"}) == "You said: keyed"


def test_per_key_rate_limit_is_429_with_retry_after(stack: Stack, a: httpx.Client) -> None:
    statuses = []
    with client_for(stack, "c") as c:
        for _ in range(RATE_LIMIT + 5):
            response = c.get("/v1/pipelines")
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["error"]["type"] == "rate_limited"
    assert statuses.count(200) == RATE_LIMIT
    assert set(statuses[RATE_LIMIT:]) == {429}
    assert a.get("/v1/pipelines").status_code == 200  # another key has its own budget


def test_idempotency_key_returns_the_same_run(a: httpx.Client, b: httpx.Client) -> None:
    first = run(a, {"question": "once"}, **{"Idempotency-Key": "order-17"})
    again = run(a, {"question": "once"}, **{"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 202
    assert first.json()["run_id"] == again.json()["run_id"]
    other = run(a, {"question": "twice"}, **{"Idempotency-Key": "order-17"})
    assert other.status_code == 409
    assert other.json()["error"]["type"] == "idempotency_key_reused"
    # Keys are per tenant: another tenant's same key is a different run.
    theirs = run(b, {"question": "once"}, **{"Idempotency-Key": "order-17"})
    assert theirs.status_code == 202 and theirs.json()["run_id"] != first.json()["run_id"]


def test_runs_are_listed_per_tenant_and_requeued_by_admins_only(
    a: httpx.Client, b: httpx.Client, ops: httpx.Client
) -> None:
    run_id = run(a, {"text": "bad"}, pipeline="failing").json()["run_id"]
    wait_until(lambda: a.get(f"/v1/runs/{run_id}").json()["state"] == "failed", 15)
    assert a.post(f"/v1/runs/{run_id}/requeue").status_code == 403
    # A tenant lists its own runs, never another's; an admin lists every tenant's.
    mine = a.get("/v1/runs", params={"state": "failed"}).json()["runs"]
    assert run_id in [r["run_id"] for r in mine]
    assert {r["tenant"] for r in a.get("/v1/runs").json()["runs"]} == {"a"}
    assert run_id not in [r["run_id"] for r in b.get("/v1/runs").json()["runs"]]
    assert b.get("/v1/runs", params={"tenant": "a"}).status_code == 403
    listed = ops.get("/v1/runs", params={"state": "failed"}).json()["runs"]
    assert run_id in [r["run_id"] for r in listed]
    theirs = ops.get("/v1/runs", params={"tenant": "a"}).json()["runs"]
    assert {r["tenant"] for r in theirs} == {"a"}

    requeued = ops.post(f"/v1/runs/{run_id}/requeue")
    assert requeued.status_code == 202
    assert requeued.json()["state"] in {"queued", "running", "failed"}
    # It runs again (and fails again: the pipeline always raises).
    final = wait_until(
        lambda: (
            (r := a.get(f"/v1/runs/{run_id}").json())["state"] == "failed"
            and r["attempts"] == 1
            and r
        ),
        15,
    )
    assert final["error"]["type"] == "ValueError"
    done = run(a, {"question": "fine"}).json()["run_id"]
    wait_until(lambda: a.get(f"/v1/runs/{done}").json()["state"] == "succeeded", 15)
    response = ops.post(f"/v1/runs/{done}/requeue")
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "run_not_failed"


def test_openapi_names_the_key_schemes_and_their_401_where_a_key_is_needed(
    stack: Stack,
) -> None:
    document = httpx.get(f"{stack.url}/openapi.json", timeout=10).json()
    schemes = document["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert schemes["apiKey"]["name"] == "X-API-Key"
    create = document["paths"]["/v1/runs"]["post"]
    assert create["security"] == [{"bearer": []}, {"apiKey": []}]
    assert {"401", "429"} <= set(create["responses"])  # rate limited per key here
    open_routes = [document["paths"]["/v1/queue"]["get"], document["paths"]["/healthz"]["get"]]
    assert all("security" not in route and "401" not in route["responses"] for route in open_routes)
