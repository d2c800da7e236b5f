"""What a client needs, against a real stack: LangServe's RemoteRunnable past the old
invoke timeout and through stream_log, the runs listing, long-polls, forgetting a run,
signed webhooks, worker pools' queue figures, and langscale.client (sync and async, a
stream resumed across a gateway restart)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable
from standardwebhooks.webhooks import Webhook

from bench.webhooks import Receiver
from langscale.client import AsyncClient, Client, LangscaleError, RunFailed
from langscale.localredis import LocalRedis

from support import Stack, wait_until

SECRET = "whsec_" + base64.b64encode(b"langscale-test-secret-0123").decode()


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "fake_latency": 0.02,
            "fake_tokens_per_second": 40,
            "max_invoke_timeout": 3,
            "gateway_drain_timeout": 1,
            "pipelines": "chat=langscale_worker.pipelines:chat,"
            "sleepy=pipelines_for_tests:sleepy,failing=pipelines_for_tests:failing",
            "webhook_secrets": f"*={SECRET}",
            "webhook_allowed_hosts": "127.0.0.1",
            "runs_indexed_metadata": "user",
        },
    ).start()
    yield stack
    stack.stop()


def submit(client: httpx.Client, pipeline: str, value: Any, **body: Any) -> str:
    response = client.post("/v1/runs", json={"pipeline": pipeline, "input": value, **body})
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


# --- LangServe parity -------------------------------------------------------------------


def test_remote_runnable_waits_for_a_run_as_long_as_it_takes(stack: Stack) -> None:
    sleepy = RemoteRunnable(f"{stack.url}/sleepy")
    assert sleepy.invoke({"seconds": 1.5}) == 1.5
    assert sleepy.batch([{"seconds": 1.2}, {"seconds": 0.1}]) == [1.2, 0.1]


async def test_async_remote_runnable_waits_too(stack: Stack) -> None:
    sleepy = RemoteRunnable(f"{stack.url}/sleepy")
    assert await sleepy.ainvoke({"seconds": 1.2}) == 1.2
    assert await sleepy.abatch([{"seconds": 0.1}, {"seconds": 1.1}]) == [0.1, 1.1]


def test_when_the_gateway_gives_up_remote_runnable_raises_with_the_run_id(
    stack: Stack, client: httpx.Client
) -> None:
    sleepy = RemoteRunnable(f"{stack.url}/sleepy")
    with pytest.raises(httpx.HTTPStatusError) as raised:
        sleepy.invoke({"seconds": 5})
    response = raised.value.response
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["type"] == "run_timeout"
    (run_id,) = error["run_ids"]
    assert run_id in str(raised.value)
    # The run went on; the client can still have its result.
    done = client.get(f"/v1/runs/{run_id}", params={"wait": 3}).json()
    assert done["state"] == "succeeded" and done["output"] == 5.0


async def test_async_batch_names_every_run_when_the_gateway_gives_up(stack: Stack) -> None:
    sleepy = RemoteRunnable(f"{stack.url}/sleepy")
    with pytest.raises(httpx.HTTPStatusError) as raised:
        await sleepy.abatch([{"seconds": 0.1}, {"seconds": 4}])
    error = raised.value.response.json()["error"]
    assert len(error["run_ids"]) == 2 and len(error["pending"]) == 1
    assert error["pending"][0] in str(raised.value)


def test_a_remote_runnable_url_may_carry_a_query_string(stack: Stack) -> None:
    # RemoteRunnable appends "/invoke" after the query: /sleepy?timeout=1/invoke.
    assert RemoteRunnable(f"{stack.url}/chat?timeout=2").invoke({"question": "q"}) == (
        "You said: q"
    )
    sleepy = RemoteRunnable(f"{stack.url}/sleepy?timeout=1")
    assert sleepy.batch([{"seconds": 0.1}, {"seconds": 0.2}]) == [0.1, 0.2]
    with pytest.raises(httpx.HTTPStatusError) as raised:
        sleepy.invoke({"seconds": 2.5})  # the URL's timeout, not the server's maximum
    assert raised.value.response.json()["error"]["type"] == "run_timeout"


def test_a_stream_that_lost_its_pipeline_to_a_query_string_says_why(
    stack: Stack, client: httpx.Client
) -> None:
    # Its streams urljoin the method onto the URL's path: /stream, without the pipeline.
    chat = RemoteRunnable(f"{stack.url}/chat?timeout=2")
    with pytest.raises(httpx.HTTPStatusError) as raised:
        list(chat.stream({"question": "q"}))
    assert raised.value.response.status_code == 404
    for method in ("stream", "stream_log", "stream_events"):
        response = client.post(f"/{method}", json={"input": {"question": "q"}})
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "pipeline_not_in_path"


def test_batch_has_one_answer_shape_for_one_input_or_many(client: httpx.Client) -> None:
    for inputs in ([{"question": "a"}], [{"question": "a"}, {"question": "b"}]):
        body = client.post("/chat/batch", json={"inputs": inputs}).json()
        assert set(body) == {"output", "metadata"}
        assert len(body["output"]) == len(body["metadata"]["run_ids"]) == len(inputs)


def test_a_timeout_above_the_maximum_is_refused(client: httpx.Client) -> None:
    response = client.post(
        "/chat/invoke", params={"timeout": 10}, json={"input": {"question": "x"}}
    )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_timeout"


async def test_stream_log_in_langserve_format(stack: Stack) -> None:
    # (LangChain has astream_log only: there is no sync stream_log to call.)
    chat = RemoteRunnable(f"{stack.url}/chat")
    patches = [patch async for patch in chat.astream_log({"question": "log me"})]
    assert patches, "no RunLogPatch arrived"
    state = patches[0]
    for patch in patches[1:]:
        state = state + patch
    assert state.state["final_output"] == "You said: log me"
    assert any(op["path"].startswith("/logs/") for p in patches for op in p.ops)


async def test_astream_log_with_filters(stack: Stack) -> None:
    chat = RemoteRunnable(f"{stack.url}/chat")
    patches = [p async for p in chat.astream_log({"question": "x"}, include_types=["llm"])]
    paths = {
        op["path"].split("/")[2] for p in patches for op in p.ops if op["path"].startswith("/logs/")
    }
    assert paths and all("FakeChatModel" in name or "Chat" in name for name in paths), paths


# --- runs API ---------------------------------------------------------------------------


def test_runs_are_listed_newest_first_with_filters_and_a_cursor(client: httpx.Client) -> None:
    tag = f"t{time.time_ns()}"
    ids = []
    for i in range(5):
        user = "u1" if i % 2 == 0 else "u2"
        pipeline = "chat" if i < 4 else "failing"
        value = {"question": str(i)} if pipeline == "chat" else {"text": "bad"}
        ids.append(submit(client, pipeline, value, metadata={"user": user, "tag": tag}))
    for run_id in ids:
        wait_until(lambda r=run_id: client.get(f"/v1/runs/{r}").json()["state"] != "queued", 15)
    mine = {"metadata": [f"tag={tag}"]}

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {**mine, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/runs", params=params).json()
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids)), "every run once, newest first"

    by_user = client.get("/v1/runs", params={"metadata": ["user=u1", f"tag={tag}"]}).json()
    assert [r["run_id"] for r in by_user["runs"]] == [ids[4], ids[2], ids[0]]
    wait_until(lambda: client.get(f"/v1/runs/{ids[4]}").json()["state"] == "failed", 15)
    failed = client.get("/v1/runs", params={**mine, "state": "failed"}).json()["runs"]
    assert [r["run_id"] for r in failed] == [ids[4]]
    chat = client.get("/v1/runs", params={**mine, "pipeline": "chat"}).json()["runs"]
    assert [r["run_id"] for r in chat] == list(reversed(ids[:4]))
    created = client.get(f"/v1/runs/{ids[2]}").json()["created_at"]
    later = client.get("/v1/runs", params={**mine, "created_after": created}).json()["runs"]
    assert {r["run_id"] for r in later} >= {ids[2], ids[3], ids[4]}
    assert (
        ids[0] not in {r["run_id"] for r in later}
        or created == client.get(f"/v1/runs/{ids[0]}").json()["created_at"]
    )


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"metadata": "no-equals-sign"}, "invalid_request"),
        ({"state": "sleeping"}, "invalid_request"),
        ({"limit": 0}, "invalid_request"),
        ({"created_after": "1.7976931348623157e308"}, "invalid_request"),  # the fuzzer's
        ({"created_before": "-1"}, "invalid_request"),
    ],
)
def test_bad_listing_parameters_are_422(client: httpx.Client, params: dict, kind: str) -> None:
    response = client.get("/v1/runs", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == kind


def test_a_long_poll_answers_when_the_run_ends(client: httpx.Client) -> None:
    run_id = submit(client, "sleepy", {"seconds": 0.8})
    started = time.monotonic()
    record = client.get(f"/v1/runs/{run_id}", params={"wait": 3}).json()
    assert record["state"] == "succeeded"
    assert time.monotonic() - started < 2.8, "answered at the end, not at the deadline"
    still = client.get(f"/v1/runs/{submit(client, 'sleepy', {'seconds': 3})}", params={"wait": 0.3})
    assert still.json()["state"] in ("queued", "running")
    assert client.get(f"/v1/runs/{run_id}", params={"wait": 99}).status_code == 422


def test_any_valid_uuid_is_404_when_unknown(client: httpx.Client) -> None:
    for unknown in ("00000000-0000-1000-8000-000000000000", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"):
        response = client.get(f"/v1/runs/{unknown}", params={"wait": 1})
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "run_not_found"


def test_an_ended_run_is_forgotten_early_a_running_one_is_not(client: httpx.Client) -> None:
    run_id = submit(client, "sleepy", {"seconds": 1}, metadata={"user": "forget-me"})
    refused = client.delete(f"/v1/runs/{run_id}")
    assert refused.status_code == 409
    assert refused.json()["error"]["type"] == "run_not_finished"
    assert client.get(f"/v1/runs/{run_id}", params={"wait": 3}).json()["state"] == "succeeded"
    assert client.delete(f"/v1/runs/{run_id}").status_code == 204
    assert client.get(f"/v1/runs/{run_id}").status_code == 404
    assert client.get(f"/v1/runs/{run_id}/stream").status_code == 404
    listed = client.get("/v1/runs", params={"metadata": "user=forget-me"}).json()["runs"]
    assert listed == []
    assert client.delete(f"/v1/runs/{run_id}").status_code == 404


# --- webhooks ---------------------------------------------------------------------------


def test_a_webhook_is_signed_and_retried_until_delivered(client: httpx.Client) -> None:
    receiver = Receiver(failures=2)
    run_id = submit(client, "chat", {"question": "hook"}, webhook=receiver.url)
    deliveries = wait_until(
        lambda: len(receiver.for_run(run_id)) >= 3 and receiver.for_run(run_id), 20
    )
    headers, body = deliveries[-1]
    Webhook(SECRET).verify(body, headers)  # raises unless the signature is the tenant's
    payload = json.loads(body)
    assert payload["type"] == "run.succeeded"
    assert payload["data"]["run_id"] == run_id
    assert payload["data"]["output"] == "You said: hook"
    finished = round(payload["data"]["finished_at"] * 1000)
    assert {h["webhook-id"] for h, _ in deliveries} == {f"{run_id}.{finished}"}, "one id"
    time.sleep(1.5)
    assert len(receiver.for_run(run_id)) == 3, "delivered once it succeeded, no more"
    metrics = client.get("/metrics").text
    assert 'langscale_webhook_deliveries_total{outcome="delivered"}' in metrics
    assert 'langscale_webhook_deliveries_total{outcome="retried"}' in metrics


def test_a_cancelled_run_notifies_its_webhook_too(client: httpx.Client) -> None:
    receiver = Receiver()
    run_id = submit(client, "sleepy", {"seconds": 5}, webhook=receiver.url)
    client.post(f"/v1/runs/{run_id}/cancel")
    (delivery,) = wait_until(lambda: receiver.for_run(run_id), 15)
    assert json.loads(delivery[1])["type"] == "run.cancelled"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://192.168.0.1/",
        "ftp://127.0.0.1/x",
        "not a url",
        "http://user:pw@127.0.0.1:9/x",
    ],
)
def test_private_and_odd_webhooks_are_refused_at_submit(client: httpx.Client, url: str) -> None:
    response = client.post(
        "/v1/runs", json={"pipeline": "chat", "input": {"question": "x"}, "webhook": url}
    )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "webhook_not_allowed"


# --- worker pools -------------------------------------------------------------------------


def test_queue_figures_per_pool(client: httpx.Client) -> None:
    default = client.get("/v1/queue", params={"pool": "default"}).json()
    assert default["pool"] == "default"
    assert set(default["pipelines"]) == {"chat", "sleepy", "failing"}
    total = client.get("/v1/queue").json()
    assert set(total["pools"]) == {"default"}, "each pool's figures beside the total"
    assert total["pools"]["default"]["pipelines"] == ["chat", "failing", "sleepy"]
    assert total["pools"]["default"]["backlog"] <= total["backlog"]
    empty = client.get("/v1/queue", params={"pool": "nobody"}).json()
    assert empty["backlog"] == 0 and empty["pipelines"] == {}
    assert client.get("/v1/queue", params={"pool": "Bad Pool"}).status_code == 422
    assert (
        'langscale_queue_backlog_jobs{pool="default",queue="langscale"}'
        in client.get("/metrics").text
    )


# --- langscale.client ---------------------------------------------------------------------


def test_the_sync_client(stack: Stack) -> None:
    with Client(stack.url) as langscale:
        accepted = langscale.submit("chat", {"question": "sync"}, metadata={"user": "c1"})
        assert langscale.result(accepted.run_id, timeout=10) == "You said: sync"
        assert langscale.get(accepted.run_id).state.value == "succeeded"
        runs = langscale.batch("chat", [{"question": "a"}, {"question": "b"}])
        assert [r.output for r in runs] == ["You said: a", "You said: b"]
        listed = [r.run_id for r in langscale.iter_runs(metadata={"user": "c1"}, limit=1)]
        assert listed[0] == accepted.run_id
        events = list(langscale.stream(accepted.run_id))
        assert events[-1].type == "end" and events[-1].data["output"] == "You said: sync"
        with pytest.raises(RunFailed) as failed:
            langscale.result(langscale.submit("failing", {"text": "x"}).run_id, timeout=10)
        assert failed.value.type == "ValueError"
        slow = langscale.submit("sleepy", {"seconds": 5})
        assert langscale.cancel(slow.run_id).state.value == "cancelled"
        langscale.delete(slow.run_id)
        with pytest.raises(LangscaleError) as missing:
            langscale.get(slow.run_id)
        assert missing.value.status == 404 and missing.value.type == "run_not_found"
        with pytest.raises(LangscaleError) as invalid:
            langscale.submit("chat", {"wrong": 1})
        assert invalid.value.type == "invalid_input"


async def test_the_async_client_resumes_a_stream_across_a_gateway_restart(stack: Stack) -> None:
    question = " ".join(f"w{i}" for i in range(60))  # ~60 chunks at 40 tokens/s: 1.5 s
    async with AsyncClient(stack.url, max_retry_wait=60) as langscale:
        accepted = await langscale.submit("chat", {"question": question}, stream=True)
        events = []
        async for event in langscale.stream(accepted.run_id):
            events.append(event)
            if len(events) == 5:
                stack.gateway.stop()  # drains: a `reconnect` event, then it exits
                stack.start_gateway()
        ids = [e.id for e in events]
        assert ids == list(range(1, len(ids) + 1)), "every event once, in order"
        assert [e.type for e in events].count("end") == 1 and events[-1].type == "end"
        chunks = "".join(e.data for e in events if e.type == "data")
        assert chunks == f"You said: {question}"
    stack.wait_ready()


# --- OpenAPI --------------------------------------------------------------------------------


def test_openapi_documents_the_real_error_schema_and_each_pipeline(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ErrorResponse" in schemas
    invoke = document["paths"]["/chat/invoke"]["post"]
    assert "/{pipeline}/invoke" not in document["paths"], "one path per pipeline, as LangServe"
    assert {"400", "404", "413", "415", "422", "429", "500", "503", "504"} <= set(
        invoke["responses"]
    )
    error = invoke["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    body = invoke["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["input"]["properties"]["question"]["type"] == "string"
    output = invoke["responses"]["200"]["content"]["application/json"]["schema"]
    assert output["properties"]["output"]["type"] == "string"
    sleepy = document["paths"]["/sleepy/batch"]["post"]["requestBody"]["content"]
    items = sleepy["application/json"]["schema"]["properties"]["inputs"]["items"]
    assert items["properties"]["seconds"]["type"] == "number"
    assert "/chat/stream_log" in document["paths"]
    assert "security" not in invoke, "no key schemes when auth is off"
    delete = document["paths"]["/v1/runs/{run_id}"]["delete"]
    assert {"204", "404", "409"} <= set(delete["responses"])


def test_api_docs_work_offline(client: httpx.Client) -> None:
    for page, assets in (
        ("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
        ("/redoc", ("redoc.standalone.js",)),
    ):
        html = client.get(page).text
        assert "cdn" not in html.lower() and "googleapis" not in html
        for asset in assets:
            assert f"/docs/static/{asset}" in html
            response = client.get(f"/docs/static/{asset}")
            assert response.status_code == 200 and len(response.content) > 10_000
