"""The gateway's HTTP API against a real Redis and a real worker process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from langscale import keys
from langscale.localredis import LocalRedis

from pipelines_for_tests import TEST_PIPELINES
from support import Stack, sync_client, wait_until

MAX_BODY = 4096
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "pipelines": TEST_PIPELINES,
            "fake_latency": 0.05,
            "max_body_bytes": MAX_BODY,
            "max_batch_size": 5,
            "job_timeout": 2,
        },
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def db(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    with sync_client(redis_server.url) as connection:
        yield connection


def wait_final(client: httpx.Client, run_id: str, timeout: float = 15) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        return body if body["state"] in {"succeeded", "failed", "cancelled"} else None

    result: dict[str, Any] = wait_until(final, timeout)
    return result


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == error_type
    assert error["message"]
    return error


# --- system routes ---------------------------------------------------------------------


def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert {"chat", "summarize", "embed"} <= set(ready["pipelines"])
    assert ready["workers"] == 1


def test_openapi_document_and_docs_page(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/runs" in paths and "/chat/invoke" in paths  # one path per pipeline
    assert client.get("/docs").status_code == 200


def test_pipelines_are_listed_with_their_schemas(client: httpx.Client) -> None:
    pipelines = {p["name"]: p for p in client.get("/v1/pipelines").json()["pipelines"]}
    assert pipelines["chat"]["input_schema"]["required"] == ["question"]
    assert pipelines["chat"]["output_schema"]["type"] == "string"
    assert pipelines["embed"]["input_schema"]["properties"]["texts"]["type"] == "array"
    assert pipelines["failing"]["description"] == "Always raises ValueError."


# --- the runs API ----------------------------------------------------------------------


def test_run_is_queued_then_succeeds_with_its_output(client: httpx.Client) -> None:
    response = client.post(
        "/v1/runs",
        json={"pipeline": "chat", "input": {"question": "ping"}, "metadata": {"user": "u1"}},
    )
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["state"] == "queued"
    assert response.headers["location"] == accepted["status_url"]

    run = wait_final(client, accepted["run_id"])
    assert run["state"] == "succeeded"
    assert run["output"] == "You said: ping"
    assert run["error"] is None
    assert run["attempts"] == 1
    assert run["metadata"] == {"user": "u1"}
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]


def test_summarize_runs_a_map_step_and_reduces(client: httpx.Client) -> None:
    text = " ".join(f"sentence {i}." for i in range(280))  # under MAX_BODY
    response = client.post(
        "/v1/runs",
        json={"pipeline": "summarize", "input": {"text": text, "chunk_size": 400}},
    )
    run = wait_final(client, response.json()["run_id"])
    assert run["state"] == "succeeded"
    assert run["output"].startswith("You said: Combine these summaries:")
    assert run["output"].count("You said: Summarize briefly:") > 5


def test_embed_returns_one_vector_per_text(client: httpx.Client) -> None:
    response = client.post("/embed/invoke", json={"input": {"texts": ["a", "b", "a"]}})
    vectors = response.json()["output"]
    assert len(vectors) == 3 and len(vectors[0]) == 16
    assert vectors[0] == vectors[2] != vectors[1]


def test_failed_run_keeps_error_type_and_message(client: httpx.Client) -> None:
    response = client.post("/v1/runs", json={"pipeline": "failing", "input": {"text": "x"}})
    run = wait_final(client, response.json()["run_id"])
    assert run["state"] == "failed"
    assert run["output"] is None
    assert run["error"] == {"type": "ValueError", "message": "cannot handle 'x'"}


def test_sync_only_runnable_runs_in_a_thread(client: httpx.Client) -> None:
    response = client.post("/sync-upper/invoke", json={"input": {"text": "abc"}})
    assert response.status_code == 200
    assert response.json()["output"] == "ABC"


def test_run_over_the_job_timeout_fails_with_a_timeout_error(client: httpx.Client) -> None:
    response = client.post("/v1/runs", json={"pipeline": "sleepy", "input": {"seconds": 5}})
    run = wait_final(client, response.json()["run_id"])
    assert run["state"] == "failed"
    assert run["error"]["type"] == "timeout"
    assert "2 s" in run["error"]["message"]


# --- sync invoke -----------------------------------------------------------------------


def test_invoke_answers_in_langserve_format(client: httpx.Client) -> None:
    response = client.post("/chat/invoke", json={"input": {"question": "hi"}, "config": {}})
    assert response.status_code == 200
    body = response.json()
    assert body["output"] == "You said: hi"
    assert body["metadata"]["feedback_tokens"] == []
    run = client.get(f"/v1/runs/{body['metadata']['run_id']}").json()
    assert run["state"] == "succeeded"


def test_invoke_that_outlasts_its_timeout_answers_504_naming_the_run(
    client: httpx.Client,
) -> None:
    response = client.post(
        "/sleepy/invoke", params={"timeout": 0.05}, json={"input": {"seconds": 0.5}}
    )
    error = assert_error(response, 504, "run_timeout")
    (run_id,) = error["run_ids"]
    assert error["pending"] == [run_id] and run_id in error["message"]
    assert response.headers["location"] == f"/v1/runs/{run_id}"
    assert wait_final(client, run_id)["output"] == 0.5


def test_invoke_of_a_failing_pipeline_reports_the_run_error(client: httpx.Client) -> None:
    response = client.post("/failing/invoke", json={"input": {"text": "boom"}})
    error = assert_error(response, 500, "ValueError")
    assert error["message"] == "cannot handle 'boom'"
    assert client.get(f"/v1/runs/{error['run_id']}").json()["state"] == "failed"


def test_batch_answers_outputs_in_input_order(client: httpx.Client) -> None:
    inputs = [{"question": f"q{i}"} for i in range(5)]
    response = client.post("/chat/batch", json={"inputs": inputs, "config": {}})
    assert response.status_code == 200
    body = response.json()
    assert body["output"] == [f"You said: q{i}" for i in range(5)]
    assert len(set(body["metadata"]["run_ids"])) == 5
    assert [r["run_id"] for r in body["metadata"]["responses"]] == body["metadata"]["run_ids"]


def test_empty_batch_answers_empty_output(client: httpx.Client) -> None:
    response = client.post("/chat/batch", json={"inputs": []})
    assert response.status_code == 200
    assert response.json()["output"] == []


def test_input_and_output_schema_routes(client: httpx.Client) -> None:
    assert client.get("/chat/input_schema").json()["required"] == ["question"]
    assert client.get("/chat/output_schema").json()["type"] == "string"


# --- bad inputs: a clear 4xx, a machine-readable body, and nothing enqueued -------------


@pytest.fixture
def queue_unchanged(db: redis.Redis) -> Iterator[None]:
    pattern = f"*}}:{keys.RUN}:*"  # every run hash, in any partition
    before = set(db.scan_iter(pattern))
    yield
    assert set(db.scan_iter(pattern)) == before, "a bad request created a run"


@pytest.mark.usefixtures("queue_unchanged")
class TestBadInput:
    def test_unknown_pipeline_is_404(self, client: httpx.Client) -> None:
        for response in (
            client.post("/v1/runs", json={"pipeline": "nope", "input": {}}),
            client.post("/nope/invoke", json={"input": {}}),
            client.post("/nope/batch", json={"inputs": [{}]}),
            client.get("/nope/input_schema"),
        ):
            error = assert_error(response, 404, "pipeline_not_found")
            assert "chat" in error["available"]

    def test_input_failing_the_schema_is_422_with_json_paths(self, client: httpx.Client) -> None:
        response = client.post("/v1/runs", json={"pipeline": "chat", "input": {"question": 3}})
        error = assert_error(response, 422, "invalid_input")
        assert error["errors"] == [
            {"path": "$.input.question", "message": "3 is not of type 'string'"}
        ]
        response = client.post("/embed/invoke", json={"input": {"texts": ["ok", 1, None]}})
        paths = [e["path"] for e in assert_error(response, 422, "invalid_input")["errors"]]
        assert paths == ["$.input.texts[1]", "$.input.texts[2]"]

    def test_batch_input_errors_name_the_item(self, client: httpx.Client) -> None:
        response = client.post(
            "/chat/batch", json={"inputs": [{"question": "ok"}, {"question": "ok"}, {}]}
        )
        error = assert_error(response, 422, "invalid_input")
        assert error["errors"][0]["path"] == "$.inputs[2]"

    def test_missing_input_is_422(self, client: httpx.Client) -> None:
        error = assert_error(client.post("/chat/invoke", json={}), 422, "invalid_request")
        assert error["errors"][0]["path"] == "$.input"
        error = assert_error(client.post("/v1/runs", json={"input": {}}), 422, "invalid_request")
        assert error["errors"][0]["path"] == "$.pipeline"

    def test_unknown_field_in_run_request_is_422(self, client: httpx.Client) -> None:
        body = {"pipeline": "chat", "input": {"question": "x"}, "priority": 1}
        error = assert_error(client.post("/v1/runs", json=body), 422, "invalid_request")
        assert error["errors"][0]["path"] == "$.priority"

    def test_config_of_the_wrong_type_is_422(self, client: httpx.Client) -> None:
        body = {"input": {"question": "x"}, "config": "fast"}
        assert_error(client.post("/chat/invoke", json=body), 422, "invalid_request")

    def test_malformed_json_is_400(self, client: httpx.Client) -> None:
        for path in ("/v1/runs", "/chat/invoke", "/chat/batch"):
            response = client.post(
                path, content=b'{"input": ', headers={"content-type": "application/json"}
            )
            assert_error(response, 400, "invalid_json")

    def test_body_over_the_limit_is_413(self, client: httpx.Client) -> None:
        big = {"pipeline": "chat", "input": {"question": "x" * MAX_BODY}}
        assert_error(client.post("/v1/runs", json=big), 413, "payload_too_large")

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"input": {"question": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}}'

        response = client.post(
            "/chat/invoke", content=chunked(), headers={"content-type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large")

    def test_unknown_run_id_is_404(self, client: httpx.Client) -> None:
        response = client.get("/v1/runs/6b1c7a52-3c1e-4d1f-9a63-3f0f8d6f2f7e")
        assert_error(response, 404, "run_not_found")

    def test_malformed_run_id_is_422(self, client: httpx.Client) -> None:
        for run_id in ("xyz", "6B1C7A52-3C1E-4D1F-9A63-3F0F8D6F2F7E", "1" * 200):
            assert_error(client.get(f"/v1/runs/{run_id}"), 422, "invalid_run_id")

    def test_invalid_timeout_is_422(self, client: httpx.Client) -> None:
        body = {"input": {"question": "x"}}
        for value in ("0", "-1", "100000"):
            response = client.post("/chat/invoke", params={"timeout": value}, json=body)
            assert_error(response, 422, "invalid_timeout")
        response = client.post("/chat/invoke", params={"timeout": "soon"}, json=body)
        assert_error(response, 422, "invalid_request")

    def test_batch_over_the_limit_is_422(self, client: httpx.Client) -> None:
        inputs = [{"question": "x"}] * 6
        assert_error(client.post("/chat/batch", json={"inputs": inputs}), 422, "batch_too_large")

    def test_batch_config_list_of_the_wrong_length_is_422(self, client: httpx.Client) -> None:
        body = {"inputs": [{"question": "x"}] * 2, "config": [{}]}
        assert_error(client.post("/chat/batch", json=body), 422, "invalid_request")

    def test_invalid_disconnect_policy_is_422(self, client: httpx.Client) -> None:
        body = {"input": {"question": "x"}}
        for path in ("/chat/invoke", "/chat/stream"):
            response = client.post(path, params={"on_disconnect": "maybe"}, json=body)
            assert_error(response, 422, "invalid_request")

    def test_overlong_idempotency_key_is_422(self, client: httpx.Client) -> None:
        response = client.post(
            "/v1/runs",
            json={"pipeline": "chat", "input": {"question": "x"}},
            headers={"Idempotency-Key": "k" * 256},
        )
        assert_error(response, 422, "invalid_idempotency_key")

    def test_listing_runs_needs_a_sane_limit(self, client: httpx.Client) -> None:
        assert client.get("/v1/runs").status_code == 200, "every state by default"
        response = client.get("/v1/runs", params={"state": "failed", "limit": 0})
        assert_error(response, 422, "invalid_request")
        assert client.get("/v1/runs", params={"state": "failed"}).status_code == 200

    def test_values_a_run_cannot_store_are_422_with_their_paths(self, client: httpx.Client) -> None:
        head = '{"pipeline": "chat", "input": {"question": "x"}, '
        for metadata, path in (
            ('{"k": "\\ud800"}', "$.metadata.k"),  # a lone surrogate: not UTF-8
            ('{"n": NaN}', "$.metadata.n"),
            ('{"n": [1, Infinity]}', "$.metadata.n[1]"),
            ('{"n": 1e400}', "$.metadata.n"),
            ('{"deep": ' + "[" * 900 + "]" * 900 + "}", "$.metadata.deep" + "[0]" * 63),
        ):
            body = head + f'"metadata": {metadata}}}'
            response = client.post("/v1/runs", content=body, headers=JSON)
            error = assert_error(response, 422, "invalid_input")
            assert error["errors"][0]["path"] == path, error
        deep = '{"input": {"question": "x", "more": ' + "[" * 900 + "]" * 900 + "}}"
        assert_error(client.post("/chat/invoke", content=deep, headers=JSON), 422, "invalid_input")

    def test_a_summarize_input_that_would_fan_out_too_far_is_422(
        self, client: httpx.Client
    ) -> None:
        tiny_chunks = {"text": "word " * 100, "chunk_size": 50}
        response = client.post("/v1/runs", json={"pipeline": "summarize", "input": tiny_chunks})
        error = assert_error(response, 422, "invalid_input")
        assert error["errors"][0]["path"] == "$.input.chunk_size"

    def test_unknown_route_and_wrong_method(self, client: httpx.Client) -> None:
        assert_error(client.get("/v1/nothing/here"), 404, "not_found")
        assert_error(client.get("/chat/invoke"), 405, "method_not_allowed")
