"""The chart's HPA mode for real: an autoscaling/v2 HPA on the External queue metric, run by
kube-controller-manager, scales the workers 1 → 4 → 1 on a real backlog; its replica trace
matches `langscale autoscale simulate` on the same arrivals and values within ±1 replica.

The metric comes from a minimal external.metrics.k8s.io server (external_metrics.py: the
gateway's /v1/queue, as prometheus-adapter's rule would give it), because prometheus-adapter
cannot be built here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from external_metrics import ExternalMetrics, registration
from kube import Kube, poll
from localcluster import NODE_IP, free_port
from scaling import scale_min_max_min

NAMESPACE = "e2e-hpa"
RELEASE = "hpa"
METRICS_NAMESPACE = "e2e-external-metrics"


@pytest.fixture(scope="module")
def external_metrics(kube: Kube) -> Iterator[ExternalMetrics]:
    pki = kube.cluster.pki
    # The aggregator verifies the name of the Service it routes through.
    pki.cert(
        "external-metrics",
        "ca",
        "external-metrics",
        sans=(f"IP:{NODE_IP}", f"DNS:external-metrics.{METRICS_NAMESPACE}.svc"),
    )

    def gateway_url(namespace: str) -> str | None:
        services = kube.core.list_namespaced_service(
            namespace, label_selector="app.kubernetes.io/component=gateway"
        ).items
        return f"http://{services[0].spec.cluster_ip}:8000" if services else None

    port = free_port()
    server = ExternalMetrics(
        NODE_IP,
        port,
        str(pki.path("external-metrics", "crt")),
        str(pki.path("external-metrics", "key")),
        gateway_url,
    )
    with server:
        objects = registration(METRICS_NAMESPACE, NODE_IP, port, pki.path("ca", "crt").read_bytes())
        kube.cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        poll(
            lambda: any(
                c.type == "Available" and c.status == "True"
                for c in kube.registration.read_api_service(
                    "v1beta1.external.metrics.k8s.io"
                ).status.conditions
                or []
            ),
            60,
            "the external metrics APIService Available",
        )
        yield server
        kube.registration.delete_api_service("v1beta1.external.metrics.k8s.io")
        kube.core.delete_namespace(METRICS_NAMESPACE)


def test_the_hpa_scales_workers_min_to_max_to_min_and_matches_the_simulator(
    kube: Kube, external_metrics: ExternalMetrics, report: dict[str, object], tmp_path: Path
) -> None:
    report["hpa"] = scale_min_max_min(kube, "hpa", NAMESPACE, RELEASE, tmp_path)
    kube.uninstall(RELEASE, NAMESPACE)
