"""A gateway rolling upgrade under 100 open streams: no run is cancelled, and every client
resumes its stream (Last-Event-ID) on another gateway and reads it to the end, with no event
repeated. The gateways' drain window (5 s) is shorter than the streams (~20 s), so the
rollout cuts every stream: a resume is exercised, not avoided.

The same with LangServe's /<pipeline>/stream, whose disconnect policy is `cancel` by default:
a stream cut by its gateway's shutdown is not its client leaving, so the run goes on (the cut
client cannot resume that stream; it follows GET /v1/runs/{id}/stream to the end)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from kube import Kube, poll
from load import final_states

NAMESPACE = "e2e-gwroll"
RELEASE = "gwroll"
GATEWAYS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=gateway"
STREAMS = 100
SETTINGS = {
    "gateway.replicaCount": "2",
    "gateway.drainTimeoutSeconds": "5",
    "worker.replicaCount": "2",
    "worker.concurrency": "60",
    "llm.fake.latencySeconds": "1",
    # ~40 tokens at 2 a second: each stream stays open for about 20 s.
    "config.extraEnv.LANGSCALE_FAKE_TOKENS_PER_SECOND": "2",
}
QUESTION = " ".join(f"word{i}" for i in range(38))


@dataclass
class Follower:
    run_id: str
    ids: list[str] = field(default_factory=list)
    data_events: int = 0
    reconnects: int = 0
    end: dict[str, object] | None = None


async def follow(client: httpx.AsyncClient, url: str, follower: Follower, deadline: float) -> None:
    """Read a run's SSE stream to its `end` event, resuming after the last id on any cut."""
    import json

    while follower.end is None and time.monotonic() < deadline:
        headers = {"Last-Event-ID": follower.ids[-1]} if follower.ids else {}
        try:
            async with client.stream(
                "GET", f"{url}/v1/runs/{follower.run_id}/stream", headers=headers
            ) as response:
                event, data, event_id = "message", "", None
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "" and event_id is not None:
                        follower.ids.append(event_id)
                        if event == "data":
                            follower.data_events += 1
                        if event == "end":
                            follower.end = json.loads(data)
                            return
                        event, data, event_id = "message", "", None
        except (httpx.TransportError, httpx.RemoteProtocolError):
            pass
        follower.reconnects += 1
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def release(kube: Kube) -> Iterator[str]:
    """The release both tests roll; yields the gateway Service's URL."""
    kube.install(RELEASE, NAMESPACE, sets=SETTINGS)
    yield kube.service_url(NAMESPACE, f"{RELEASE}-langscale-gateway")
    kube.uninstall(RELEASE, NAMESPACE)


def test_a_gateway_rollout_under_100_streams_cancels_no_run_and_every_client_resumes(
    kube: Kube, release: str, report: dict[str, object]
) -> None:
    url = release
    old_gateways = {p.metadata.name for p in kube.pods(NAMESPACE, GATEWAYS)}

    async def scenario() -> list[Follower]:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(10, read=60), limits=httpx.Limits(max_connections=200)
        ) as client:
            followers = []
            for index in range(STREAMS):
                body = {
                    "pipeline": "chat",
                    "input": {"question": f"{index} {QUESTION}"},
                    "stream": True,
                }
                response = await client.post(f"{url}/v1/runs", json=body)
                assert response.status_code == 202, response.text
                followers.append(Follower(response.json()["run_id"]))
            deadline = time.monotonic() + 300
            tasks = [asyncio.create_task(follow(client, url, f, deadline)) for f in followers]
            # Every stream open and flowing, then roll the gateways.
            while (  # noqa: ASYNC110 - polls the followers' progress with a deadline
                sum(f.data_events > 0 for f in followers) < STREAMS and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.5)
            rollout = asyncio.to_thread(
                kube.install,
                RELEASE,
                NAMESPACE,
                sets={
                    **SETTINGS,
                    "gateway.extraEnv[0].name": "ROLL",
                    "gateway.extraEnv[0].value": "b",
                },
                upgrade=True,
            )
            await rollout
            await asyncio.gather(*tasks)
            return followers

    followers = asyncio.run(scenario())
    poll(
        lambda: not ({p.metadata.name for p in kube.pods(NAMESPACE, GATEWAYS)} & old_gateways),
        120,
        "old gateways gone",
    )
    states = final_states(url, [f.run_id for f in followers])
    ended = [f.end for f in followers if f.end is not None]
    resumed = sum(f.reconnects > 0 for f in followers)
    report["gateway_roll"] = {
        "streams": STREAMS,
        "states": states,
        "clients_that_reconnected": resumed,
        "clients_that_read_to_end": len(ended),
    }
    assert states == {"succeeded": STREAMS}, states
    assert len(ended) == STREAMS
    assert all(end.get("state") == "succeeded" for end in ended)
    for f in followers:
        assert len(f.ids) == len(set(f.ids)), f"{f.run_id}: an event was delivered twice"
    assert resumed > 0, "the rollout cut no stream: the test did not test a resume"


async def langserve_stream(client: httpx.AsyncClient, url: str, follower: Follower, index: int,
                           deadline: float) -> None:  # fmt: skip
    """POST /chat/stream and read it; if the gateway cuts it, follow the run's own stream."""
    body = {"input": {"question": f"{index} {QUESTION}"}}
    try:
        async with client.stream("POST", f"{url}/chat/stream", json=body) as response:
            follower.run_id = response.headers["X-Langscale-Run-Id"]
            async for line in response.aiter_lines():
                if line.startswith("event: data"):
                    follower.data_events += 1
                elif line.startswith("event: end"):
                    follower.end = {"state": "succeeded"}
                    return
                elif line.startswith("event: error"):
                    break
    except (httpx.TransportError, httpx.RemoteProtocolError):
        pass
    if follower.run_id:
        follower.reconnects += 1  # cut before its end: follow the run's own stream
        await follow(client, url, follower, deadline)


def test_a_gateway_rollout_under_100_langserve_streams_cancels_no_run(
    kube: Kube, release: str, report: dict[str, object]
) -> None:
    url = release

    async def scenario() -> list[Follower]:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(10, read=60), limits=httpx.Limits(max_connections=200)
        ) as client:
            followers = [Follower("") for _ in range(STREAMS)]
            deadline = time.monotonic() + 300
            tasks = [
                asyncio.create_task(langserve_stream(client, url, f, i, deadline))
                for i, f in enumerate(followers)
            ]
            while (  # noqa: ASYNC110 - polls the clients' progress with a deadline
                sum(f.data_events > 0 for f in followers) < STREAMS and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.5)
            await asyncio.to_thread(
                kube.install,
                RELEASE,
                NAMESPACE,
                sets={
                    **SETTINGS,
                    "gateway.extraEnv[0].name": "ROLL",
                    "gateway.extraEnv[0].value": "c",
                },
                upgrade=True,
            )
            await asyncio.gather(*tasks)
            return followers

    followers = asyncio.run(scenario())
    states = final_states(url, [f.run_id for f in followers if f.run_id])
    cut = sum(f.reconnects > 0 for f in followers)
    report["gateway_roll_langserve"] = {"streams": STREAMS, "states": states, "cut": cut}
    assert cut > 0, "the rollout cut no LangServe stream: nothing was tested"
    assert states == {"succeeded": STREAMS}, states
