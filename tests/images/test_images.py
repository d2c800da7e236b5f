"""The images, built by `make images`, run for real: as uid 10001 on a read-only root
filesystem, end to end through Redis, gateway and workers on a private Docker network; a
worker stopped (drain) or killed (lease) mid-run loses nothing; a worker image built FROM ours
with a team's own package serves its pipeline."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import (
    HOME_TMPFS,
    Cluster,
    Gateway,
    docker,
    running_or_fail,
    start_gateway,
    wait_for_runs,
)

from langscale.localredis import free_port

from support import ROOT, wait_until

RUNS = 50
RUN_SECONDS = 2
# Generous: the run lifecycle may change recovery timing; the promise is "eventually, once".
DEADLINE = 180


def submit(gateway: Gateway, count: int, pipeline: str = "chat") -> list[str]:
    with httpx.Client(timeout=10) as client:
        ids = []
        for index in range(count):
            response = client.post(
                f"{gateway.url}/v1/runs",
                json={"pipeline": pipeline, "input": {"question": f"q{index}"}},
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["run_id"])
    return ids


def ready(gateway: Gateway, *workers: str) -> bool:
    for worker in workers:
        running_or_fail(worker)
    return gateway.ready(workers=len(workers))


def running(gateway: Gateway, run_ids: list[str]) -> int:
    with httpx.Client(timeout=5) as client:
        states = [client.get(f"{gateway.url}/v1/runs/{r}").json()["state"] for r in run_ids]
    return states.count("running")


@pytest.mark.parametrize("service", ["gateway", "worker"])
def test_images_run_as_uid_10001_and_cannot_write_their_root(
    images: dict[str, str], service: str
) -> None:
    inspect = docker("image", "inspect", "--format", "{{.Config.User}}", images[service])
    assert inspect.stdout.strip() == "10001:10001"
    probe = (
        "import os, pathlib\n"
        "print(os.getuid(), os.getgid(), os.environ['HOME'])\n"
        "pathlib.Path(os.environ['HOME'], 'cache-ok').write_text('x')\n"
        "try:\n    open('/opt/venv/x', 'w')\n"
        "except OSError as e:\n    print('read-only', e.errno)\n"
    )
    result = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        HOME_TMPFS,
        "--entrypoint",
        "python3",
        images[service],
        "-c",
        probe,
    )
    assert result.stdout.split("\n")[:2] == ["10001 10001 /home/langscale", "read-only 30"]


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> Gateway:
    return start_gateway(cluster)


def test_a_run_succeeds_end_to_end_and_health_endpoints_answer(
    cluster: Cluster, gateway: Gateway
) -> None:
    metrics_port = free_port()
    worker = cluster.run(
        "worker-e2e",
        cluster.images["worker"],
        env=cluster.langscale_env(fake_latency=0.05),
        ports={metrics_port: 9101},
    )
    wait_until(lambda: ready(gateway, worker), 120, interval=0.5)
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    worker_health = httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5)
    assert worker_health.status_code == 200 and worker_health.json()["status"] == "ok"
    (run_id,) = submit(gateway, 1)
    (view,) = wait_for_runs(gateway, [run_id], 60).values()
    assert view["state"] == "succeeded" and view["output"] == "You said: q0"
    for name in (gateway.name, worker):
        user = docker("exec", name, "python3", "-c", "import os; print(os.getuid())")
        assert user.stdout.strip() == "10001"
        state = docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name)
        assert state.stdout.strip() == "true"
    docker("rm", "-f", worker)
    cluster.names.remove(worker)


def test_docker_stop_of_a_worker_mid_run_drains_and_loses_nothing(
    cluster: Cluster, gateway: Gateway
) -> None:
    settings = {"fake_latency": RUN_SECONDS, "worker_concurrency": 30, "drain_timeout": 60}
    stopped = cluster.run(
        "worker-drain-a", cluster.images["worker"], env=cluster.langscale_env(**settings)
    )
    wait_until(lambda: ready(gateway, stopped), 120, interval=0.5)
    run_ids = submit(gateway, RUNS)
    wait_until(lambda: running(gateway, run_ids) >= 20, 60, interval=0.2)
    other = cluster.run(
        "worker-drain-b", cluster.images["worker"], env=cluster.langscale_env(**settings)
    )
    started = time.monotonic()
    docker("stop", "-t", "60", stopped)  # SIGTERM, then SIGKILL after 60 s
    stop_seconds = time.monotonic() - started
    exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", stopped).stdout.strip()
    assert exit_code == "0", cluster.logs(stopped)[-3000:]
    assert stop_seconds < 60  # it drained; it was not killed
    views = wait_for_runs(gateway, run_ids, DEADLINE)
    assert [v["state"] for v in views.values()].count("succeeded") == RUNS, views
    # Drained runs finished on the stopped worker: none ran twice.
    assert {v["attempts"] for v in views.values()} == {1}
    for name in (stopped, other):
        docker("rm", "-f", name)
        cluster.names.remove(name)


def test_docker_kill_of_a_worker_mid_run_loses_nothing(cluster: Cluster, gateway: Gateway) -> None:
    settings = {"fake_latency": RUN_SECONDS, "worker_concurrency": 30, "lease_seconds": 3}
    killed = cluster.run(
        "worker-kill-a", cluster.images["worker"], env=cluster.langscale_env(**settings)
    )
    wait_until(lambda: ready(gateway, killed), 120, interval=0.5)
    run_ids = submit(gateway, 20)
    wait_until(lambda: running(gateway, run_ids) >= 10, 60, interval=0.2)
    docker("kill", killed)  # SIGKILL: no drain, its leases lapse
    survivor = cluster.run(
        "worker-kill-b", cluster.images["worker"], env=cluster.langscale_env(**settings)
    )
    views = wait_for_runs(gateway, run_ids, DEADLINE)
    assert [v["state"] for v in views.values()].count("succeeded") == len(run_ids), views
    assert max(v["attempts"] for v in views.values()) >= 2  # the killed worker's runs re-ran
    for name in (killed, survivor):
        docker("rm", "-f", name)
        cluster.names.remove(name)


def test_a_worker_image_built_from_ours_serves_the_teams_pipeline(
    cluster: Cluster, gateway: Gateway, tmp_path: Path
) -> None:
    example = ROOT / "examples" / "custom-worker"
    context = tmp_path / "context"
    (context / "dist").mkdir(parents=True)
    (context / "Dockerfile").write_text((example / "Dockerfile").read_text())
    subprocess.run(
        [
            str(ROOT / ".tools" / "bin" / "uv"),
            "build",
            "--wheel",
            "--quiet",
            "--out-dir",
            str(context / "dist"),
            str(example / "myapp"),
        ],
        check=True,
    )
    tag = f"langscale-test/custom-worker:{cluster.network}"
    docker(
        "build",
        "--quiet",
        "--network",
        "none",
        "--build-arg",
        f"WORKER_IMAGE={cluster.images['worker']}",
        "-t",
        tag,
        str(context),
        timeout=600,
    )
    try:
        custom = cluster.run("worker-custom", tag, env=cluster.langscale_env())

        def serves_shout() -> bool:
            running_or_fail(custom)
            pipelines = httpx.get(f"{gateway.url}/v1/pipelines", timeout=5).json()
            return "shout" in {p["name"] for p in pipelines.get("pipelines", pipelines)}

        wait_until(serves_shout, 120, interval=0.5)
        response = httpx.post(
            f"{gateway.url}/v1/runs", json={"pipeline": "shout", "input": {"text": "hello"}}
        )
        assert response.status_code == 202, response.text
        (view,) = wait_for_runs(gateway, [response.json()["run_id"]], 60).values()
        assert view["state"] == "succeeded" and view["output"] == "HELLO!"
        docker("rm", "-f", custom)
        cluster.names.remove(custom)
    finally:
        docker("image", "rm", "-f", tag, check=False)
