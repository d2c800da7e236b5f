"""Redis blips are ridden out: a restart (AOF on), a pause, a Sentinel failover during load
make no run fail and no run execute twice."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from faults import records, submit_all, wait_final, work
from history import check

from langscale.localredis import LocalRedis, free_port, redis_server_binary, start_local_redis

from support import wait_until


def invoke_in_background(url: str, value: dict[str, Any]) -> dict[str, httpx.Response]:
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        result["response"] = httpx.post(f"{url}/recorded/invoke", json={"input": value}, timeout=60)

    threading.Thread(target=call, daemon=True).start()
    return result


def assert_clean_invoke(result: dict[str, httpx.Response]) -> None:
    """An invoke that waited through the outage got its answer, or a 503 in JSON naming
    the run (it goes on) — never a plain-text 500."""
    wait_until(lambda: "response" in result, 60)
    response = result["response"]
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert response.status_code in (200, 503), response.text


@pytest.mark.parametrize("fault", ["restart", "pause"])
def test_a_redis_outage_makes_no_run_fail_or_run_twice(
    stack_factory: Any, record_db: Any, tmp_path: Path, fault: str
) -> None:
    server = start_local_redis(directory=tmp_path, appendonly=True)
    try:
        stack = stack_factory(redis_url=server.url, workers=1, lease_seconds=3)
        accepted = submit_all(stack, [work(i, seconds=3, chunks=3) for i in range(30)])
        accepted |= submit_all(stack, [work(i, prefix="s", seconds=3) for i in range(10)], True)
        wait_until(lambda: sum(r["state"] == "running" for r in records(stack, list(accepted))), 10)
        invoke = invoke_in_background(stack.url, work(0, prefix="invoke", seconds=2))
        time.sleep(0.5)
        if fault == "restart":
            server.stop()  # its append-only file keeps every acknowledged write
            time.sleep(4)
            server.start()
        else:
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            time.sleep(4)
            server.process.send_signal(signal.SIGCONT)
        runs = wait_final(stack, list(accepted))
        assert_clean_invoke(invoke)
        assert [r["state"] for r in runs] == ["succeeded"] * 40
        verdict = check(record_db, accepted, set(list(accepted)[30:]), runs_url=server.url)
        assert verdict.clean, verdict.summary()
        assert verdict.executed_twice == [], verdict.summary()
    finally:
        server.stop()


# --- Sentinel -----------------------------------------------------------------------------


class Sentinels:
    """A master, its replica and three Sentinels, as real processes on loopback."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = start_local_redis(directory=_mkdir(directory / "master"), appendonly=True)
        self.replica = LocalRedis(free_port(), _mkdir(directory / "replica"), True).start()
        redis.Redis(port=self.replica.port).replicaof("127.0.0.1", self.master.port)
        self.ports = [free_port() for _ in range(3)]
        self.sentinels = []
        for port in self.ports:
            conf = directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor main 127.0.0.1 {self.master.port} 2\n"
                "sentinel down-after-milliseconds main 1000\n"
                "sentinel failover-timeout main 5000\n"
                "sentinel parallel-syncs main 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [redis_server_binary(), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        wait_until(self._watching, 30)

    def _watching(self) -> bool:
        try:
            client = redis.Redis(port=self.ports[0])
            replicas = client.sentinel_slaves("main")
            sentinels = client.sentinel_sentinels("main")
        except redis.RedisError:
            return False
        return bool(replicas) and len(sentinels) == 2

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/main/0"

    def master_port(self) -> int:
        _, port = redis.Redis(port=self.ports[0]).sentinel_get_master_addr_by_name("main")
        return int(port)

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
            process.wait(10)
        self.replica.stop()
        self.master.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    group = Sentinels(tmp_path)
    yield group
    group.stop()


def test_a_sentinel_failover_during_load_loses_no_run_and_runs_none_twice(
    stack_factory: Any, record_db: Any, sentinels: Sentinels
) -> None:
    stack = stack_factory(redis_url=sentinels.url, workers=2, lease_seconds=3)
    accepted = submit_all(stack, [work(i, seconds=2, chunks=4) for i in range(40)], stream=True)
    wait_until(lambda: sum(r["state"] == "running" for r in records(stack, list(accepted))), 10)
    before = sentinels.master_port()
    # The master dies; its replica takes over once the Sentinels agree.
    assert sentinels.master.process is not None
    sentinels.master.process.send_signal(signal.SIGKILL)
    wait_until(lambda: sentinels.master_port() != before, 30)
    more = submit_all(stack, [work(i, prefix="after", seconds=0.5) for i in range(10)])
    runs = wait_final(stack, [*accepted, *more])
    assert [r["state"] for r in runs] == ["succeeded"] * 50
    master = f"redis://127.0.0.1:{sentinels.master_port()}/0"
    verdict = check(record_db, accepted | more, set(accepted), runs_url=master)
    assert verdict.clean, verdict.summary()
    assert verdict.executed_twice == [], verdict.summary()
