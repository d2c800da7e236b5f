"""helm install with an external Redis (the production shape): a password from an existing
Secret, a non-default port; every pod Ready, `helm test` passes, a run succeeds through the
gateway Service."""

from __future__ import annotations

import json

import httpx
from kube import Kube, poll

REDIS_NAMESPACE = "e2e-ext-redis"
NAMESPACE = "e2e-external"
RELEASE = "ext"
PASSWORD = "e2e-external-redis-password"


def redis_objects(image: str) -> list[dict[str, object]]:
    labels = {"app": "ext-redis"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": REDIS_NAMESPACE}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "ext-redis", "namespace": REDIS_NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "redis",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["--port", "6380", "--appendonly", "yes",
                                         "--maxmemory-policy", "noeviction",
                                         "--requirepass", PASSWORD, "--dir", "/data"],
                                "ports": [{"containerPort": 6380}],
                                "readinessProbe": {"tcpSocket": {"port": 6380}, "periodSeconds": 2},
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ext-redis", "namespace": REDIS_NAMESPACE},
            "spec": {"selector": labels, "ports": [{"port": 6380, "targetPort": 6380}]},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ext-redis", "namespace": NAMESPACE},
            "stringData": {"password": PASSWORD},
        },
    ]  # fmt: skip


def test_the_chart_installs_against_an_external_redis_from_an_existing_secret(
    kube: Kube,
) -> None:
    redis_image = kube.images[2]
    kube.cluster.kubectl(
        "apply", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": redis_objects(redis_image)}),
    )  # fmt: skip
    poll(lambda: kube.all_pods_ready(REDIS_NAMESPACE), 120, "the external Redis Ready")
    kube.install(
        RELEASE,
        NAMESPACE,
        sets={
            "redis.enabled": "false",
            "externalRedis.enabled": "true",
            "externalRedis.host": f"ext-redis.{REDIS_NAMESPACE}.svc.cluster.local",
            "externalRedis.port": "6380",
            "externalRedis.existingSecret": "ext-redis",
            "externalRedis.existingSecretPasswordKey": "password",
        },
    )
    assert poll(lambda: kube.all_pods_ready(NAMESPACE), 120, "every pod Ready")
    components = {
        p.metadata.labels.get("app.kubernetes.io/component") for p in kube.pods(NAMESPACE)
    }
    assert components == {"gateway", "worker"}
    result = kube.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "180s", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    url = kube.service_url(NAMESPACE, f"{RELEASE}-langscale-gateway")
    response = httpx.post(
        f"{url}/chat/invoke", json={"input": {"question": "external"}}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "You said: external"
    kube.uninstall(RELEASE, NAMESPACE)
    kube.core.delete_namespace(REDIS_NAMESPACE)
