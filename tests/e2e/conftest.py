"""The local Kubernetes cluster (tests/e2e/cluster) and the chart installed on it.

`make e2e` runs these tests: the session starts one cluster (built from registry packages,
cached under $LANGSCALE_E2E_CACHE), loads the images `make images` built, and always tears the
cluster down at the end. LANGSCALE_E2E_KUBECONFIG=<path> runs them against a cluster that is
already up (`python tests/e2e/cluster/localcluster.py up`) instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kube import Kube
from localcluster import Cluster, State, build, teardown

CACHE = Path(os.environ.get("LANGSCALE_E2E_CACHE", Path.home() / ".cache" / "langscale" / "e2e"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One cluster, one order: files run in name order (install, autoscaling, rollouts, ...).
    items.sort(key=lambda item: item.path.name)


@pytest.fixture(scope="session")
def images() -> list[str]:
    refs = os.environ.get("LANGSCALE_E2E_IMAGES", "").split()
    if len(refs) < 3:
        pytest.fail(
            "LANGSCALE_E2E_IMAGES must name the gateway, worker and Redis images "
            "(`make e2e` sets it from `make image-list`)"
        )
    return refs


def load_images(cluster: Cluster, images: list[str]) -> None:
    if not set(images) - cluster.image_refs():
        return  # a reused cluster that has them already
    archive = os.environ.get("LANGSCALE_E2E_IMAGE_ARCHIVE")
    if archive:
        cluster.import_image(Path(archive), ", ".join(images))
    else:
        cluster.import_docker_images(images)


@pytest.fixture(scope="session")
def cluster(images: list[str]) -> Iterator[Cluster]:
    existing = os.environ.get("LANGSCALE_E2E_KUBECONFIG")
    artifacts = build(CACHE, keda=False)  # KEDA is built when its test installs it
    if existing:
        run_dir = Path(existing).parent
        reused = Cluster(CACHE, artifacts, run_dir=run_dir)
        reused.state = State.load(run_dir)
        load_images(reused, images)
        yield reused
        return
    started = Cluster(CACHE, artifacts)
    try:
        started.up()
        load_images(started, images)
        yield started
    finally:
        teardown(started.run_dir)


@pytest.fixture(scope="session")
def kube(cluster: Cluster, images: list[str]) -> Kube:
    return Kube(cluster, images)


@pytest.fixture(scope="session")
def keda(kube: Kube) -> None:
    """KEDA (operator and metrics API server) installed once, for the tests that use it."""
    kube.cluster.install_keda()


REPORT: dict[str, object] = {}


@pytest.fixture(scope="session")
def report(cluster: Cluster) -> dict[str, object]:
    """Figures the tests measured; written to $LANGSCALE_E2E_CACHE/reports/ and printed at
    the end of the session."""
    REPORT["cluster_timings_s"] = cluster.timings
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    reports = CACHE / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / time.strftime("e2e-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(REPORT, indent=2, default=str))
    terminalreporter.section("e2e figures")
    terminalreporter.write_line(json.dumps(REPORT, indent=1, default=str))
    terminalreporter.write_line(f"(written to {path})")
