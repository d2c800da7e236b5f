"""What the Helm chart relies on in the processes themselves, run for real (real gateway and
worker processes, real Redis): API keys rotate by updating the mounted Secret, with no
restart, and the chart's `helm test` script passes with a good key and gives up at once,
with a message, on a refused one."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from langscale.localredis import LocalRedis

from support import Stack, wait_until

helm = pytest.importorskip("helm_python")

CHART_DIR = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "langscale"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def write_secret_volume(volume: Path, keys_text: str) -> None:
    """Update a directory the way the kubelet updates a Secret volume: write the new
    contents into a fresh timestamped directory, then swap the `..data` symlink atomically;
    `api-keys` is a symlink through `..data`."""
    stamp = volume / f"..{time.time_ns()}"
    stamp.mkdir()
    (stamp / "api-keys").write_text(keys_text)
    tmp_link = volume / "..data_tmp"
    tmp_link.symlink_to(stamp.name)
    os.replace(tmp_link, volume / "..data")
    if not (volume / "api-keys").is_symlink():
        (volume / "api-keys").symlink_to("..data/api-keys")


@pytest.fixture(scope="module")
def volume(logs_dir: Path) -> Path:
    path = logs_dir / "auth"
    path.mkdir()
    write_secret_volume(path, f"{sha('first-key')}:team\n")
    return path


@pytest.fixture(scope="module")
def stack(redis_server: LocalRedis, logs_dir: Path, volume: Path) -> Iterator[Stack]:
    stack = Stack(
        redis_server.url,
        logs_dir,
        settings={
            "fake_latency": 0.01,
            "auth_enabled": "true",
            "api_keys_file": volume / "api-keys",
            "api_keys_reload_interval": 0.2,
        },
    ).start()
    yield stack
    stack.stop()


def status_with(stack: Stack, key: str) -> int:
    return httpx.get(f"{stack.url}/v1/pipelines", headers={"X-API-Key": key}).status_code


def test_api_keys_rotate_without_a_restart(stack: Stack, volume: Path) -> None:
    assert status_with(stack, "first-key") == 200
    assert status_with(stack, "second-key") == 401
    pid = stack.gateway.pid if stack.gateway else None
    write_secret_volume(volume, f"{sha('second-key')}:team\n")
    wait_until(lambda: status_with(stack, "second-key") == 200, 10)
    assert status_with(stack, "first-key") == 401
    assert stack.gateway is not None and stack.gateway.pid == pid and stack.gateway.alive()


def test_a_keys_file_that_stops_parsing_keeps_the_previous_keys(stack: Stack, volume: Path) -> None:
    write_secret_volume(volume, f"{sha('third-key')}:team\n")
    wait_until(lambda: status_with(stack, "third-key") == 200, 10)
    write_secret_volume(volume, "not a key entry\n")
    assert stack.gateway is not None
    gateway = stack.gateway

    def broken_file_seen_and_old_key_kept() -> bool:
        # The file is checked when a request needs the keys (at most every reload interval).
        assert status_with(stack, "third-key") == 200
        return "not reloaded, keeping the previous keys" in gateway.output()

    wait_until(broken_file_seen_and_old_key_kept, 10, interval=0.1)


def helm_test_pod() -> tuple[str, dict[str, str]]:
    values: dict[str, Any] = {
        "auth": {"enabled": True, "existingSecret": "keys"},
        "tests": {"apiKeyExistingSecret": "test-key", "timeoutSeconds": 60},
    }
    with helm.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(values, name="rel", namespace="ns")
    pod = yaml.safe_load(manifests["langscale/templates/tests/test-run.yaml"])
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    return container["args"][0], env


def run_helm_test(stack: Stack, api_key: str) -> subprocess.CompletedProcess[str]:
    script, env = helm_test_pod()
    env.update({"GATEWAY_URL": stack.url, "API_KEY": api_key, "PATH": os.environ["PATH"]})
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90
    )


def test_the_helm_test_script_passes_with_a_good_key(stack: Stack, volume: Path) -> None:
    write_secret_volume(volume, f"{sha('test-key')}:team\n")
    wait_until(lambda: status_with(stack, "test-key") == 200, 10)
    result = run_helm_test(stack, "test-key")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout


def test_the_helm_test_script_gives_up_at_once_on_a_refused_key(stack: Stack) -> None:
    started = time.monotonic()
    result = run_helm_test(stack, "wrong-key")
    assert result.returncode != 0
    assert time.monotonic() - started < 10  # not the 60 s timeout
    assert "401" in result.stderr and "tests.apiKeyExistingSecret" in result.stderr
