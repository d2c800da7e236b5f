"""What a platform team's review with a real Helm 4.2 and kubectl 1.36 found (issue 12), and
the features production charts give: each test would fail on the chart before the fix.

Renders go through the SDK (``render``) and, where users type values on the command line
(``--set``) or render without a cluster (GitOps), through the real helm binary."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART_DIR, REPO_ROOT, helm_template, load_values, objects_of

DOCS = REPO_ROOT / "docs" / "kubernetes.md"


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def container(obj: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = pod_spec(obj)["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def egress_ports(policy: dict[str, Any]) -> list[Any]:
    return [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]


def of(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    return found


# --- the documented production install reaches Redis --------------------------------------


def documented_prod_values() -> tuple[dict[str, Any], str]:
    text = DOCS.read_text()
    block = re.search(r"```yaml\n# prod-values.yaml\n(.*?)```", text, re.S)
    assert block, "docs/kubernetes.md lost its prod-values.yaml block"
    url = re.search(r"--from-literal=redis-url='([^']+)'", text)
    assert url, "docs/kubernetes.md lost the Redis URL of its Secret"
    return yaml.safe_load(block.group(1)), url.group(1)


def test_the_documented_production_values_open_the_port_of_the_documented_redis_url(
    render: Any,
) -> None:
    values, url = documented_prod_values()
    port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
    rendered = render(values)
    for component in ("gateway", "worker"):
        assert port in egress_ports(rendered.get("NetworkPolicy", component)), component


def test_a_url_in_an_existing_secret_needs_the_port_for_the_network_policy(
    render_error: Any,
) -> None:
    values = {
        "redis": {"enabled": False},
        "externalRedis": {"enabled": True, "existingSecret": "r", "existingSecretUrlKey": "u"},
    }
    assert "set externalRedis.port (e.g. 6380" in render_error(values)


# --- the bundled Redis password under GitOps ----------------------------------------------


def test_an_existing_secret_makes_renders_identical_and_creates_no_password(
    tmp_path: Path,
) -> None:
    values = {"redis": {"auth": {"existingSecret": "my-redis", "existingSecretPasswordKey": "pw"}}}
    first = helm_template(values, tmp_dir=tmp_path).stdout
    second = helm_template(values, tmp_dir=tmp_path).stdout
    assert first == second  # what Argo CD / Flux see: no perpetual diff
    objects = objects_of(first)
    assert not [o for o in objects if o["kind"] == "Secret"]
    for kind, suffix in (
        ("Deployment", "-gateway"),
        ("Deployment", "-worker"),
        ("StatefulSet", "-redis"),
    ):
        env = env_of(container(of(objects, kind, suffix)))
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "my-redis",
            "key": "pw",
        }


def test_a_generated_password_rolls_every_pod_that_uses_it(render: Any) -> None:
    rendered = render()
    secret_text = rendered.manifests["langscale/templates/redis-secret.yaml"]
    checksum = hashlib.sha256(secret_text.encode()).hexdigest()
    for kind, component in (
        ("Deployment", "gateway"),
        ("Deployment", "worker"),
        ("StatefulSet", "redis"),
    ):
        annotations = rendered.get(kind, component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/redis-secret"] == checksum, component


def test_notes_tell_gitops_users_to_bring_the_redis_password(render: Any) -> None:
    assert "set redis.auth.existingSecret" in render().notes
    assert (
        "set redis.auth.existingSecret"
        not in render({"redis": {"auth": {"existingSecret": "x"}}}).notes
    )


# --- numbers from --set --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "check"),
    [
        (["worker.autoscaling.targetUtilization=0.5"], ("hpa", "50")),
        (["worker.concurrency=10", "worker.autoscaling.targetUtilization=0.75"], ("hpa", "7500m")),
        (["llm.fake.latencySeconds=0.5"], ("configmap", ("LANGSCALE_FAKE_LATENCY", "0.5"))),
        (
            ["config.maxInvokeTimeoutSeconds=2.5"],
            ("configmap", ("LANGSCALE_MAX_INVOKE_TIMEOUT", "2.5")),
        ),
    ],
)
def test_helm_set_of_a_float_is_accepted(sets: list[str], check: tuple[str, Any]) -> None:
    result = helm_template(sets=sets, check=False)
    assert result.returncode == 0, result.stderr
    objects = objects_of(result.stdout)
    what, expected = check
    if what == "hpa":
        hpa = of(objects, "HorizontalPodAutoscaler", "-worker")
        assert hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"] == expected
    else:
        configmap = of(objects, "ConfigMap", "rel-langscale")
        assert configmap["data"][expected[0]] == expected[1]


def test_the_simulators_recommendation_applies_as_the_docs_say() -> None:
    text = (REPO_ROOT / "docs" / "autoscaling.md").read_text()
    recommended = re.search(r"recommended: (worker\.autoscaling\.targetUtilization=[0-9.]+)", text)
    assert recommended
    assert helm_template(sets=[recommended.group(1)], check=False).returncode == 0


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["worker.autoscaling.targetUtilization=abc"], "/worker/autoscaling/targetUtilization"),
        (
            ["worker.autoscaling.targetUtilization=1.5"],
            "worker.autoscaling.targetUtilization (1.5) must be above 0 and at most 1",
        ),
        (["llm.fake.latencySeconds=soon"], "/llm/fake/latencySeconds"),
        (
            ["gateway.image.tag=latest"],
            'gateway.image.tag "latest" is not allowed: pin a version (e.g. 0.1.0) or set '
            "gateway.image.digest",
        ),
        (["worker.image.tag=latest"], 'worker.image.tag "latest" is not allowed'),
        (["redis.image.tag=latest"], 'redis.image.tag "latest" is not allowed'),
    ],
)
def test_bad_values_from_the_command_line_name_the_value(sets: list[str], message: str) -> None:
    result = helm_template(sets=sets, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# --- autoscaling ----------------------------------------------------------------------------


def test_an_hpa_cannot_scale_to_zero(render_error: Any) -> None:
    error = render_error({"worker": {"autoscaling": {"minReplicas": 0}}})
    assert "worker.autoscaling.minReplicas=0 needs worker.autoscaling.kind=keda" in error


def test_keda_scales_to_zero_with_activation_fallback_and_authentication(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "keda-scale-to-zero-values.yaml"))
    spec = rendered.get("ScaledObject", "worker")["spec"]
    assert spec["minReplicaCount"] == 0
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 4}
    (trigger,) = spec["triggers"]
    assert trigger["authenticationRef"] == {
        "name": "langscale-prometheus",
        "kind": "TriggerAuthentication",
    }
    assert trigger["metadata"]["activationThreshold"] == "5"
    assert trigger["metadata"]["authModes"] == "bearer"
    assert trigger["metadata"]["threshold"] == "50"  # 100 x "0.5"
    metrics_api = render(
        {"worker": {"autoscaling": {"kind": "keda", "keda": {"activationThreshold": 2}}}}
    )
    (trigger,) = metrics_api.get("ScaledObject", "worker")["spec"]["triggers"]
    assert trigger["metadata"]["activationTargetValue"] == "2"


def test_switching_between_hpa_and_keda_on_upgrade_never_collides(render: Any) -> None:
    hpa = render().get("HorizontalPodAutoscaler", "worker")
    # KEDA's webhook skips an HPA so annotated: hpa -> keda is let in while this HPA exists.
    assert hpa["metadata"]["annotations"]["validations.keda.sh/hpa-ownership"] == "false"
    scaled = render({"worker": {"autoscaling": {"kind": "keda"}}}).get("ScaledObject", "worker")
    keda_hpa_name = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"]
    # keda -> hpa: the chart's HPA is not the one KEDA created (Helm would refuse to adopt it).
    assert keda_hpa_name != hpa["metadata"]["name"]
    assert len(keda_hpa_name) <= 63


# --- helm test with auth ---------------------------------------------------------------------


def test_auth_without_a_key_for_the_test_pod_fails_the_render(render_error: Any) -> None:
    error = render_error({"auth": {"enabled": True, "existingSecret": "keys"}})
    assert "auth.enabled with tests.enabled needs tests.apiKeyExistingSecret" in error


def test_the_test_pod_gives_up_at_once_on_a_refused_key(render: Any) -> None:
    script = container(render().get("Pod", "test"))["args"][0]
    assert "error.code in (401, 403)" in script  # run for real in tests/integration/test_deploy.py


# --- network policies ---------------------------------------------------------------------------


def test_dns_egress_ports_and_peers_are_configurable(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "platform-values.yaml"))
    dns = rendered.get("NetworkPolicy", "worker")["spec"]["egress"][0]
    assert {"port": 5353, "protocol": "UDP"} in dns["ports"]
    assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in dns["to"]


def test_otlp_egress_follows_the_endpoint(render: Any) -> None:
    for endpoint, protocol, port in (
        ("http://otel-collector.observability:4317", "grpc", 4317),
        ("http://collector.obs:4318/v1/traces", "http/protobuf", 4318),
        ("https://otlp.example.com", "http/protobuf", 4318),
        ("http://collector:55680", "grpc", 55680),
    ):
        rendered = render({"telemetry": {"otlp": {"endpoint": endpoint, "protocol": protocol}}})
        for component in ("gateway", "worker"):
            assert port in egress_ports(rendered.get("NetworkPolicy", component)), endpoint
    assert 4317 not in egress_ports(render().get("NetworkPolicy", "worker"))


def test_external_redis_can_be_reached_by_peers_and_sentinels(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "sentinel-values.yaml"))
    env = env_of(container(rendered.get("Deployment", "worker")))
    assert env["LANGSCALE_REDIS_URL"]["value"] == (
        "redis+sentinel://:$(REDIS_PASSWORD)@sentinel-0.redis.data.svc.cluster.local:26379,"
        "sentinel-1.redis.data.svc.cluster.local:26379,"
        "sentinel-2.redis.data.svc.cluster.local:26379/mymaster/1"
    )
    (redis_rule,) = [
        r
        for r in rendered.get("NetworkPolicy", "gateway")["spec"]["egress"]
        if 26379 in [p["port"] for p in r["ports"]]
    ]
    assert sorted(p["port"] for p in redis_rule["ports"]) == [6379, 26379]
    assert redis_rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}}}
    ]


def test_the_llm_egress_port_follows_the_base_url(render: Any) -> None:
    assert 8443 in egress_ports(
        render(load_values(CHART_DIR / "ci" / "platform-values.yaml")).get(
            "NetworkPolicy", "worker"
        )
    )
    assert 443 in egress_ports(render().get("NetworkPolicy", "worker"))
    local = render(
        {"llm": {"provider": "openai", "openai": {"baseUrl": "http://vllm.models:8000/v1"}}}
    )
    assert 8000 in egress_ports(local.get("NetworkPolicy", "worker"))


# --- rollouts and shutdown -------------------------------------------------------------------


def test_worker_pdb_takes_a_percentage(render: Any) -> None:
    assert render().get("PodDisruptionBudget", "worker")["spec"]["maxUnavailable"] == "25%"
    pdb = render({"worker": {"pdb": {"maxUnavailable": 2}}}).get("PodDisruptionBudget", "worker")
    assert pdb["spec"]["maxUnavailable"] == 2


def test_gateway_grace_period_follows_its_drain_window(render: Any) -> None:
    spec = pod_spec(render({"gateway": {"drainTimeoutSeconds": 120}}).get("Deployment", "gateway"))
    assert spec["terminationGracePeriodSeconds"] == 10 + 120 + 5
    env = env_of(spec["containers"][0])
    assert env["LANGSCALE_GATEWAY_DRAIN_TIMEOUT"]["value"] == "120"


# --- bundled Redis: Valkey, memory ----------------------------------------------------------------


def test_bundled_redis_is_valkey_with_maxmemory_well_under_the_limit(render: Any) -> None:
    sts = render().get("StatefulSet", "redis")
    c = container(sts)
    assert c["image"] == "docker.io/valkey/valkey:8.1.10-alpine"
    assert c["command"][0] == "valkey-server"
    assert c["livenessProbe"]["exec"]["command"] == ["valkey-cli", "ping"]
    maxmemory = int(c["command"][c["command"].index("--maxmemory") + 1])
    assert maxmemory == 128 * 1024 * 1024  # half of the 256Mi limit


def test_the_redis_flavor_switches_the_commands(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "examples" / "local-images-values.yaml"))
    c = container(rendered.get("StatefulSet", "redis"))
    assert c["image"] == "localhost/langscale-redis:7.0-bookworm"
    assert c["command"][0] == "redis-server"
    assert c["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"redis": {"maxmemory": "200mb"}},
            "redis.maxmemory (200mb = 209715200 bytes) is more than 75% of "
            "redis.resources.limits.memory (256Mi = 268435456 bytes)",
        ),
        (
            {
                "redis": {"enabled": False},
                "externalRedis": {
                    "enabled": True,
                    "url": "redis://r:6379/0",
                    "networkPolicyCIDRs": ["10.0.0.0/33"],
                },
            },
            'externalRedis.networkPolicyCIDRs[0] ("10.0.0.0/33") is not a CIDR',
        ),
        (
            {"networkPolicy": {"llm": {"cidrs": ["10.0.0.1"]}}},
            'networkPolicy.llm.cidrs[0] ("10.0.0.1") is not a CIDR; write an address with a '
            "prefix length",
        ),
        (
            {"worker": {"autoscaling": {"keda": {"fallback": {"replicas": 2}}, "kind": "keda"}}},
            "worker.autoscaling.keda.fallback needs failureThreshold and replicas",
        ),
        (
            {
                "redis": {"enabled": False},
                "externalRedis": {"enabled": True, "sentinel": {"enabled": True}},
            },
            "externalRedis.sentinel.enabled needs externalRedis.sentinel.hosts",
        ),
        (
            {
                "redis": {"enabled": False},
                "externalRedis": {
                    "enabled": True,
                    "host": "r",
                    "sentinel": {"enabled": True, "hosts": ["s:26379"]},
                },
            },
            "leave externalRedis.url, externalRedis.host and "
            "externalRedis.existingSecretUrlKey empty",
        ),
        (
            {"gateway": {"serviceAccount": {"create": False}}},
            "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false",
        ),
    ],
)
def test_inconsistent_values_fail_with_the_value_and_the_fix(
    render_error: Any, values: dict[str, Any], message: str
) -> None:
    assert message in render_error(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fullnameOverride": "MyRelease"}, "/fullnameOverride"),
        ({"nameOverride": "lang_scale"}, "/nameOverride"),
        ({"worker": {"extraEnv": [{"value": "x"}]}}, "/worker/extraEnv/0"),
        ({"gateway": {"extraVolumes": [{"emptyDir": {}}]}}, "/gateway/extraVolumes/0"),
        ({"worker": {"pdb": {"maxUnavailable": "a quarter"}}}, "/worker/pdb/maxUnavailable"),
        ({"listenAddress": "localhost"}, "/listenAddress"),
        ({"redis": {"flavor": "keydb"}}, "/redis/flavor"),
        ({"redis": {"maxmemoryRatio": 0.9}}, "/redis/maxmemoryRatio"),
    ],
)
def test_schema_refuses_values_the_api_server_would(
    render_error: Any, values: dict[str, Any], message: str
) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


# --- NOTES -------------------------------------------------------------------------------------


def test_notes_show_the_ingress_url_and_warn_when_exposed_without_auth(render: Any) -> None:
    notes = render(load_values(CHART_DIR / "ci" / "ingress-values.yaml")).notes
    assert "https://langscale.example.com/" in notes
    assert "authentication is OFF" in notes
    with_auth = render(
        {
            **load_values(CHART_DIR / "ci" / "ingress-values.yaml"),
            **load_values(CHART_DIR / "ci" / "auth-values.yaml"),
        }
    ).notes
    assert "authentication is OFF" not in with_auth
    assert "authentication is OFF" not in render().notes  # ClusterIP only
    assert (
        "authentication is OFF" in render({"gateway": {"service": {"type": "LoadBalancer"}}}).notes
    )


def test_notes_say_keda_clusters_cannot_run_prometheus_adapter(render: Any) -> None:
    assert "already serves external.metrics.k8s.io" in render().notes


# --- features: per component ---------------------------------------------------------------------


def test_each_component_has_its_own_service_account(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "platform-values.yaml"))
    accounts = {o["metadata"]["name"]: o for o in rendered.of_kind("ServiceAccount")}
    assert set(accounts) == {"rel-langscale-gateway", "rel-langscale-worker", "rel-langscale-redis"}
    assert accounts["rel-langscale-worker"]["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/langscale-llm"
    }
    assert (
        "annotations" not in accounts["rel-langscale-gateway"]["metadata"]
        or "eks.amazonaws.com/role-arn"
        not in accounts["rel-langscale-gateway"]["metadata"]["annotations"]
    )
    for kind, component in (
        ("Deployment", "gateway"),
        ("Deployment", "worker"),
        ("StatefulSet", "redis"),
    ):
        spec = pod_spec(rendered.get(kind, component))
        assert spec["serviceAccountName"] == f"rel-langscale-{component}"
        assert spec["automountServiceAccountToken"] is False
    for account in accounts.values():
        assert account["automountServiceAccountToken"] is False


def test_platform_extras_reach_every_component(render: Any) -> None:
    values = load_values(CHART_DIR / "ci" / "platform-values.yaml")
    rendered = render(values)
    worker = pod_spec(rendered.get("Deployment", "worker"))
    assert {"name": "corporate-ca", "configMap": {"name": "corporate-ca-bundle"}} in worker[
        "volumes"
    ]
    main = container(rendered.get("Deployment", "worker"), "worker")
    assert {"name": "corporate-ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in main[
        "volumeMounts"
    ]
    assert env_of(main)["SSL_CERT_FILE"]["value"] == "/etc/ssl/corporate/ca-bundle.crt"
    assert [c["name"] for c in worker["initContainers"]] == ["wait-for-llm"]
    assert [c["name"] for c in worker["containers"]] == ["worker", "log-shipper"]
    assert main["startupProbe"]["failureThreshold"] == 60
    assert worker["affinity"] == values["worker"]["affinity"]
    redis = pod_spec(rendered.get("StatefulSet", "redis"))
    assert redis["tolerations"] == values["redis"]["tolerations"]
    assert redis["affinity"] == values["redis"]["affinity"]
    assert (
        redis["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"][
            "app.kubernetes.io/component"
        ]
        == "redis"
    )
    assert container(rendered.get("StatefulSet", "redis"))["startupProbe"]["periodSeconds"] == 5
    annotations = rendered.get("StatefulSet", "redis")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["example.com/backup"] == "false"
    gateway = rendered.get("Deployment", "gateway")
    assert gateway["spec"]["template"]["metadata"]["annotations"]["example.com/team"] == "platform"
    assert pod_spec(gateway)["tolerations"] == values["gateway"]["tolerations"]


def test_image_digests_pin_every_image(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "platform-values.yaml"))
    assert container(rendered.get("Deployment", "gateway"))["image"].endswith("@sha256:" + "1" * 64)
    assert container(rendered.get("Deployment", "worker"))["image"].endswith("@sha256:" + "2" * 64)
    assert (
        container(rendered.get("StatefulSet", "redis"))["image"]
        == "docker.io/valkey/valkey@sha256:" + "3" * 64
    )
    assert container(rendered.get("Pod", "test"))["image"].endswith("@sha256:" + "1" * 64)


def test_servers_listen_on_ipv6_when_asked(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "platform-values.yaml"))
    assert container(rendered.get("Deployment", "gateway"))["args"] == [
        "--host",
        "::",
        "--port",
        "8000",
    ]
    assert (
        env_of(container(rendered.get("Deployment", "worker")))["LANGSCALE_WORKER_HTTP_HOST"][
            "value"
        ]
        == "::"
    )
    default = render()
    assert container(default.get("Deployment", "gateway"))["args"] == [
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]


def test_home_is_writable_under_a_read_only_root(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "auth-values.yaml"))
    for kind, component in (("Deployment", "gateway"), ("Deployment", "worker"), ("Pod", "test")):
        obj = rendered.get(kind, component)
        mounts = {m["mountPath"]: m["name"] for m in container(obj)["volumeMounts"]}
        assert mounts["/home/langscale"] == "home", component
        volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}
        assert "emptyDir" in volumes["home"], component
        assert container(obj)["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_keys_file_is_mounted_so_the_kubelet_can_update_it(render: Any) -> None:
    gateway = render(load_values(CHART_DIR / "ci" / "auth-values.yaml")).get(
        "Deployment", "gateway"
    )
    mount = next(m for m in container(gateway)["volumeMounts"] if m["name"] == "api-keys")
    assert "subPath" not in mount  # a subPath mount never sees Secret updates
