"""A minimal `external.metrics.k8s.io` API, used only by the HPA test.

The chart's HPA mode reads the External metric `langscale_queue_backlog_jobs` (or `_ready_`),
which production clusters serve with prometheus-adapter from the gateway's queue gauge.
prometheus-adapter cannot be built here: its Go module is not served by the module proxy
(`go list -m -versions sigs.k8s.io/prometheus-adapter` answers "version is not available";
docs/e2e.md). This server stands in for it, and for nothing else: it answers the two calls
the HPA controller makes through the API server's aggregation layer (discovery and one
metric), with the value the adapter rule would give — the gateway's own figure, read from
`/v1/queue` of the release in the metric's namespace at the moment the HPA asks (no scrape
lag). Everything else in the path is real: the APIService, the aggregator, the HPA
controller's algorithm and behavior, the Deployment and its pods.

Each answer is recorded (time, namespace, metric, value) so a test can replay the metric
the HPA saw.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

GROUP_VERSION = "external.metrics.k8s.io/v1beta1"
METRICS = {"langscale_queue_backlog_jobs": "backlog", "langscale_queue_ready_jobs": "ready"}


class ExternalMetrics:
    def __init__(
        self,
        host: str,
        port: int,
        cert: str,
        key: str,
        queue_url: Callable[[str], str | None],
    ) -> None:
        self.queue_url = queue_url
        self.served: list[tuple[float, str, str, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = owner.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ExternalMetrics:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        path = path.split("?", 1)[0]
        if path in ("/healthz", "/readyz", "/livez"):
            return 200, {"status": "ok"}
        if path.rstrip("/") == f"/apis/{GROUP_VERSION}":
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": GROUP_VERSION,
                "resources": [
                    {
                        "name": name,
                        "singularName": "",
                        "namespaced": True,
                        "kind": "ExternalMetricValueList",
                        "verbs": ["get"],
                    }
                    for name in METRICS
                ],
            }
        match = re.fullmatch(rf"/apis/{GROUP_VERSION}/namespaces/([^/]+)/([^/]+)", path)
        if not match or match.group(2) not in METRICS:
            return 404, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 404,
                "reason": "NotFound",
                "message": f"no metric at {path}",
            }
        namespace, metric = match.groups()
        url = self.queue_url(namespace)
        if url is None:
            return 404, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 404,
                "reason": "NotFound",
                "message": f"no gateway in {namespace}",
            }
        try:
            queue = httpx.get(f"{url}/v1/queue", timeout=5).json()
        except (httpx.HTTPError, ValueError) as error:
            return 503, {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 503,
                "reason": "ServiceUnavailable",
                "message": str(error),
            }
        value = float(queue[METRICS[metric]])
        self.served.append((time.time(), namespace, metric, value))
        return 200, {
            "kind": "ExternalMetricValueList",
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": [
                {
                    "metricName": metric,
                    "metricLabels": {"queue": str(queue.get("queue", ""))},
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "value": f"{round(value * 1000)}m",
                }
            ],
        }


def registration(namespace: str, ip: str, port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """The Service, its endpoints (this host) and the APIService that route the group here."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "external-metrics", "namespace": namespace},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "external-metrics",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "external-metrics"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "service": {"name": "external-metrics", "namespace": namespace, "port": 443},
                "caBundle": base64.b64encode(ca_pem).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]
