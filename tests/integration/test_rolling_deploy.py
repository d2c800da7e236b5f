"""A rolling deploy with real processes: old and new workers side by side under load, a
pipeline added, then one removed; no run fails, and each pipeline's runs go only to workers
that serve it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from langscale.localredis import LocalRedis

from support import Stack, wait_until

CHAT = "chat=langscale_worker.pipelines:chat"
SLEEPY = "sleepy=pipelines_for_tests:sleepy"
ECHO = "echo=pipelines_for_tests:message_echo"


class Load:
    """Submits runs of some pipelines, round-robin, until stopped; records every run id."""

    def __init__(self, url: str, pipelines: dict[str, object]) -> None:
        self.url = url
        self.pipelines = dict(pipelines)
        self.runs: dict[str, str] = {}  # run id -> pipeline
        self.refused: list[tuple[str, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def drop(self, pipeline: str) -> None:
        self.pipelines.pop(pipeline)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                for pipeline, value in list(self.pipelines.items()):
                    response = client.post("/v1/runs", json={"pipeline": pipeline, "input": value})
                    if response.status_code == 202:
                        self.runs[response.json()["run_id"]] = pipeline
                    else:
                        self.refused.append((pipeline, response.status_code, response.text))
                time.sleep(0.02)


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "fake_latency": 0.02,
            "pipeline_heartbeat": 0.5,
            "drain_timeout": 10,
            "pipelines": f"{CHAT},{SLEEPY}",
        },
    )
    stack.start(workers=2)
    yield stack
    stack.stop()


def served(client: httpx.Client) -> set[str]:
    return {p["name"] for p in client.get("/v1/pipelines").json()["pipelines"]}


def test_adding_then_removing_a_pipeline_in_a_rolling_deploy_fails_no_run(stack: Stack) -> None:
    client = httpx.Client(base_url=stack.url, timeout=10)
    old = list(stack.workers)
    load = Load(stack.url, {"chat": {"question": "q"}, "sleepy": {"seconds": 0.2}}).start()
    time.sleep(1)

    # v2 adds `echo`: new workers start beside the old ones, under load.
    new = [stack.add_worker(pipelines=f"{CHAT},{SLEEPY},{ECHO}") for _ in range(2)]
    wait_until(lambda: "echo" in served(client), 90)
    load.pipelines["echo"] = [{"type": "human", "content": "hi"}]
    time.sleep(2)  # old and new side by side: echo runs must reach new workers only
    for worker in old:
        worker.stop()  # SIGTERM: the rolling update drains the old pods one by one

    # v3 removes `sleepy`: its clients stop first, then the workers that serve it go.
    newer = [stack.add_worker(pipelines=f"{CHAT},{ECHO}") for _ in range(2)]
    wait_until(lambda: client.get("/readyz").json()["workers"] >= 4, 90)
    load.drop("sleepy")
    time.sleep(1)
    for worker in new:
        worker.stop()
    time.sleep(1)
    load.stop()

    assert not load.refused, load.refused[:5]
    states: dict[str, list[str]] = {}

    def all_ended() -> bool:
        states.clear()
        for run_id in load.runs:
            record = client.get(f"/v1/runs/{run_id}").json()
            states.setdefault(record["state"], []).append(run_id)
        return set(states) <= {"succeeded", "failed", "cancelled"}

    wait_until(all_ended, 180, interval=0.5)
    assert set(states) == {"succeeded"}, {
        s: [client.get(f"/v1/runs/{r}").json().get("error") for r in ids[:3]]
        for s, ids in states.items()
    }
    by_pipeline = {
        p: sum(1 for v in load.runs.values() if v == p) for p in ("chat", "sleepy", "echo")
    }
    assert all(by_pipeline.values()), by_pipeline
    # echo ran only on workers that serve it (v2 and v3).
    new_ids = {w.pid for w in [*new, *newer]}
    for run_id, pipeline in load.runs.items():
        if pipeline == "echo":
            worker = client.get(f"/v1/runs/{run_id}").json()["worker"]
            assert int(worker.split(":")[1]) in new_ids, worker
    client.close()
