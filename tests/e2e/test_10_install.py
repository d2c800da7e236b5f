"""helm install on a real cluster: every pod Ready, `helm test` passes, a run succeeds
through the gateway Service."""

from __future__ import annotations

import httpx
from kube import Kube, poll

NAMESPACE = "e2e-bundled"
RELEASE = "ls"


def test_the_chart_installs_with_the_bundled_redis_and_every_pod_becomes_ready(kube: Kube) -> None:
    kube.install(RELEASE, NAMESPACE)
    pods = kube.pods(NAMESPACE)
    components = sorted({p.metadata.labels.get("app.kubernetes.io/component", "?") for p in pods})
    assert components == ["gateway", "redis", "worker"], components
    assert poll(lambda: kube.all_pods_ready(NAMESPACE), 120, "every pod Ready"), kube.logs(
        NAMESPACE, ""
    )


def test_helm_test_submits_a_run_and_sees_it_succeed(kube: Kube) -> None:
    result = kube.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "180s", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Phase:          Succeeded" in result.stdout or "Succeeded" in result.stdout


def test_a_client_run_succeeds_through_the_gateway_service(kube: Kube) -> None:
    url = kube.service_url(NAMESPACE, f"{RELEASE}-langscale-gateway")
    response = httpx.post(
        f"{url}/chat/invoke", json={"input": {"question": "through the Service"}}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "You said: through the Service"
