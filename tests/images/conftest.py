"""Container tests of the images (`make test-images`): Redis, gateway and workers run as
containers on a private Docker network, the way a cluster runs them (uid 10001, read-only
root filesystem, tmpfs on /tmp and HOME). Only `make test-images` runs them (it builds the
images and makes sure a Docker Engine answers): `make test` skips this folder."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from langscale.localredis import free_port

from support import ROOT, wait_until

if not os.environ.get("LANGSCALE_TEST_IMAGES"):
    collect_ignore_glob = ["test_*.py"]

REDIS_PASSWORD = "test-password-" + uuid.uuid4().hex[:8]
HOME_TMPFS = "/home/langscale:rw,uid=10001,gid=10001"


def docker(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def image_names() -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "deploy" / "docker" / "build-images.sh"), "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    gateway, worker, redis = out
    return {"gateway": gateway, "worker": worker, "redis": redis}


@dataclass
class Cluster:
    """Containers on one private network; removed at the end."""

    network: str
    images: dict[str, str]
    names: list[str] = field(default_factory=list)

    def run(
        self,
        name: str,
        image: str,
        *args: str,
        env: dict[str, str] | None = None,
        ports: dict[int, int] | None = None,
        read_only: bool = True,
        tmpfs: tuple[str, ...] = (),
    ) -> str:
        full = f"{self.network}-{name}"
        command = ["run", "-d", "--name", full, "--network", self.network, "--network-alias", name]
        if read_only:
            # As the chart's emptyDirs: /tmp for everyone, HOME writable by uid 10001.
            command += ["--read-only", "--tmpfs", "/tmp", "--tmpfs", HOME_TMPFS]
        for path in tmpfs:
            command += ["--tmpfs", f"{path}:rw,uid=10001,gid=10001"]
        for key, value in (env or {}).items():
            command += ["-e", f"{key}={value}"]
        for host_port, container_port in (ports or {}).items():
            command += ["-p", f"127.0.0.1:{host_port}:{container_port}"]
        docker(*command, image, *args)
        self.names.append(full)
        return full

    def langscale_env(self, **settings: Any) -> dict[str, str]:
        env = {
            "LANGSCALE_REDIS_URL": f"redis://:{REDIS_PASSWORD}@redis:6379/0",
            "LANGSCALE_LOG_FORMAT": "json",
            "LANGSCALE_PIPELINE_CACHE_TTL": "0",
        }
        env.update({f"LANGSCALE_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    def logs(self, name: str) -> str:
        result = docker("logs", name, check=False)
        return result.stdout + result.stderr

    def remove_all(self) -> None:
        for name in self.names:
            docker("rm", "-f", name, check=False)
        self.names.clear()


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    names = image_names()
    for image in names.values():
        docker("image", "inspect", image)  # `make test-images` built them
    return names


@pytest.fixture(scope="module")
def cluster(images: dict[str, str]) -> Iterator[Cluster]:
    network = f"langscale-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", network)
    cluster = Cluster(network, images)
    cluster.run(
        "redis",
        images["redis"],
        "--appendonly",
        "yes",
        "--dir",
        "/data",
        "--requirepass",
        REDIS_PASSWORD,
        "--maxmemory",
        "134217728",
        "--maxmemory-policy",
        "noeviction",
        tmpfs=("/data",),
    )
    try:
        yield cluster
    finally:
        for name in cluster.names:
            print(f"--- {name}\n{cluster.logs(name)[-3000:]}")
        cluster.remove_all()
        docker("network", "rm", network, check=False)


def running_or_fail(name: str) -> None:
    """Raise at once (with its log) when a container has exited: no wait for a deadline."""
    state = docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
    if state != "true":
        logs = docker("logs", name, check=False)
        raise AssertionError(
            f"container {name} is not running:\n{(logs.stdout + logs.stderr)[-3000:]}"
        )


@dataclass
class Gateway:
    name: str
    url: str

    def ready(self, workers: int = 1) -> bool:
        running_or_fail(self.name)
        try:
            response = httpx.get(f"{self.url}/readyz", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("workers", 0) >= workers


def start_gateway(cluster: Cluster, **settings: Any) -> Gateway:
    port = free_port()
    name = cluster.run(
        "gateway",
        cluster.images["gateway"],
        env=cluster.langscale_env(**settings),
        ports={port: 8000},
    )
    return Gateway(name, f"http://127.0.0.1:{port}")


def wait_for_runs(
    gateway: Gateway, run_ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll until every run ended; returns the last view of each."""
    last: dict[str, dict[str, Any]] = {}

    def all_ended() -> bool:
        with httpx.Client(timeout=5) as client:
            for run_id in run_ids:
                if last.get(run_id, {}).get("state") in ("succeeded", "failed", "cancelled"):
                    continue
                response = client.get(f"{gateway.url}/v1/runs/{run_id}")
                if response.status_code == 200:
                    last[run_id] = response.json()
        return all(
            last.get(r, {}).get("state") in ("succeeded", "failed", "cancelled") for r in run_ids
        )

    wait_until(all_ended, timeout, interval=0.5)
    return last
