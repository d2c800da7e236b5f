"""What matters in the rendered chart: autoscaling targets, graceful shutdown, security,
labels and selectors, secrets handling, and clear failures for bad values."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from chart_support import CHART_DIR, RELEASE, SCENARIOS, load_values

SELECTOR_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
}
EXTERNAL_REDIS = {
    "redis": {"enabled": False},
    "externalRedis": {
        "enabled": True,
        "existingSecret": "r",
        "existingSecretUrlKey": "url",
        "port": 6379,
    },
}
# The chart's own containers (sidecars and init containers of a scenario are the user's).
CHART_CONTAINERS = {"gateway", "worker", "redis", "submit-and-wait"}
POD_KINDS = ("Deployment", "StatefulSet", "Pod")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def worker_hpa(render: Any, **worker: Any) -> dict[str, Any]:
    return render({"worker": worker}).get("HorizontalPodAutoscaler", "worker")


# --- the values layout other tools read ------------------------------------------------


def test_worker_autoscaling_values_layout_is_the_agreed_one() -> None:
    """`langscale autoscale simulate --values values.yaml` reads exactly this layout."""
    from langscale.autoscale.values import DEFAULT_VALUES

    worker = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["worker"]
    # The simulator's fallback (when it cannot find the chart) is the chart's own defaults.
    expected = DEFAULT_VALUES["worker"]
    for key in ("concurrency", "jobTimeoutSeconds", "drainTimeoutSeconds", "autoscaling"):
        assert worker[key] == expected[key], key
    assert (worker["concurrency"], worker["jobTimeoutSeconds"]) == (100, 300)
    assert worker["autoscaling"]["metric"] == "backlog"


def test_every_value_is_documented_in_values_yaml() -> None:
    """Each key line of values.yaml has a comment on it or just above it."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):(\s|$)", line)
        if not match:
            continue
        above = lines[index - 1].strip() if index else ""
        has_children = line.rstrip().endswith(":")
        if "#" in line or above.startswith("#") or has_children:
            continue
        if re.match(r"^\s*-", lines[index - 1] if index else ""):
            continue
        undocumented.append(line.strip())
    # Keys inside verbatim Kubernetes blocks (probes, resources, securityContext) are
    # documented by their parent block's comment.
    allowed = re.compile(
        r"^(path|port|initialDelaySeconds|periodSeconds|timeoutSeconds|failureThreshold|cpu|"
        r"memory|runAs\w+|fsGroup|type|allowPrivilegeEscalation|readOnlyRootFilesystem|"
        r"privileged|drop|stabilizationWindowSeconds|selectPolicy|pathType|"
        r"kubernetes\.io/metadata\.name|k8s-app|grafana_dashboard|question)\b"
    )
    assert [u for u in undocumented if not allowed.match(u)] == []


# --- worker autoscaling -----------------------------------------------------------------


def test_default_worker_hpa_scales_on_the_external_backlog_metric(render: Any) -> None:
    rendered = render()
    hpa = rendered.get("HorizontalPodAutoscaler", "worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": rendered.get("Deployment", "worker")["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "langscale_queue_backlog_jobs"
    # 100 x 0.8
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "80"}
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["maxReplicas"] == 20
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert hpa["spec"]["behavior"] == values["worker"]["autoscaling"]["behavior"]


@pytest.mark.parametrize(
    ("concurrency", "utilization", "quantity"),
    [
        (100, 0.8, "80"),
        (50, 0.75, "37500m"),
        (10, 0.75, "7500m"),
        (3, 0.5, "1500m"),
        (1, 0.5, "500m"),
        (200, 1, "200"),
        (7, 0.3, "2100m"),  # 7 * 0.3 is 2.0999999999999996 in floats: rounded to milli
    ],
)
def test_hpa_target_is_concurrency_times_utilization(
    render: Any, concurrency: int, utilization: float, quantity: str
) -> None:
    hpa = worker_hpa(
        render, concurrency=concurrency, autoscaling={"targetUtilization": utilization}
    )
    target = hpa["spec"]["metrics"][0]["external"]["target"]
    assert target == {"type": "AverageValue", "averageValue": quantity}


def test_ready_metric_is_selectable(render: Any) -> None:
    hpa = worker_hpa(render, autoscaling={"metric": "ready"})
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "langscale_queue_ready_jobs"


def test_hpa_selects_the_queue_by_its_name(render: Any) -> None:
    default = render().get("HorizontalPodAutoscaler", "worker")
    selector = default["spec"]["metrics"][0]["external"]["metric"]["selector"]
    assert selector == {"matchLabels": {"queue": "langscale", "pool": "default"}}
    named = render({"config": {"queueName": "langscale-prod"}}).get(
        "HorizontalPodAutoscaler", "worker"
    )
    assert named["spec"]["metrics"][0]["external"]["metric"]["selector"] == {
        "matchLabels": {"queue": "langscale-prod", "pool": "default"}
    }


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"worker": {"autoscaling": {"kind": "keda"}}},
        {
            "worker": {
                "autoscaling": {
                    "kind": "keda",
                    "keda": {"trigger": "prometheus", "prometheusServerAddress": "http://p:9090"},
                }
            }
        },
    ],
    ids=["hpa", "keda-metrics-api", "keda-prometheus"],
)
def test_replicas_are_omitted_when_an_autoscaler_owns_them(
    render: Any, values: dict[str, Any]
) -> None:
    rendered = render(values)
    assert "replicas" not in rendered.get("Deployment", "worker")["spec"]
    assert "replicas" not in rendered.get("Deployment", "gateway")["spec"]  # gateway CPU HPA
    kinds = {
        o["kind"]
        for o in rendered.objects
        if o["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }
    if values:
        assert "ScaledObject" in kinds and "HorizontalPodAutoscaler" not in kinds
    else:
        assert "HorizontalPodAutoscaler" in kinds and "ScaledObject" not in kinds


def test_replicas_are_set_without_autoscaling(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "no-autoscaling-values.yaml"))
    assert rendered.get("Deployment", "worker")["spec"]["replicas"] == 3
    assert rendered.get("Deployment", "gateway")["spec"]["replicas"] == 1
    assert rendered.of_kind("HorizontalPodAutoscaler") == []
    assert rendered.of_kind("ScaledObject") == []


def test_keda_metrics_api_trigger_reads_the_gateway_queue_endpoint(render: Any) -> None:
    rendered = render(
        {"worker": {"concurrency": 10, "autoscaling": {"kind": "keda", "targetUtilization": 0.75}}}
    )
    scaled = rendered.get("ScaledObject", "worker")
    spec = scaled["spec"]
    assert (
        spec["scaleTargetRef"]["name"] == rendered.get("Deployment", "worker")["metadata"]["name"]
    )
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 20)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (15, 300)
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        == values["worker"]["autoscaling"]["behavior"]
    )
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api"
    assert trigger["metricType"] == "AverageValue"
    gateway_svc = rendered.get("Service", "gateway")["metadata"]["name"]
    assert trigger["metadata"] == {
        "url": f"http://{gateway_svc}.langscale.svc:8000/v1/queue?pool=default",
        "format": "json",
        "valueLocation": "backlog",
        "targetValue": "7.5",
    }


def test_keda_prometheus_trigger_takes_the_max_over_gateway_replicas(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "keda-prometheus-values.yaml"))
    (trigger,) = rendered.get("ScaledObject", "worker")["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring:9090"
    assert trigger["metadata"]["query"].startswith("max(langscale_queue_backlog_jobs{")
    assert 'queue="langscale",pool="default"' in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == "7.5"  # 10 x 0.75


def test_prometheus_adapter_example_aggregates_with_max(render: Any) -> None:
    adapter = yaml.safe_load(
        (CHART_DIR / "examples" / "prometheus-adapter-values.yaml").read_text()
    )
    (rule,) = adapter["rules"]["external"]
    assert "langscale_queue_(backlog|ready" in rule["seriesQuery"]
    assert rule["metricsQuery"].startswith("max by (queue, pool)")
    assert rule["resources"]["overrides"]["namespace"]["resource"] == "namespace"


# --- graceful shutdown ------------------------------------------------------------------


def test_worker_grace_period_covers_the_drain_window(render: Any) -> None:
    worker = render().get("Deployment", "worker")
    spec = pod_spec(worker)
    env = env_of(spec["containers"][0])
    drain = int(env["LANGSCALE_DRAIN_TIMEOUT"]["value"])
    assert drain == 330
    assert int(env["LANGSCALE_JOB_TIMEOUT"]["value"]) == 300
    assert int(env["LANGSCALE_WORKER_CONCURRENCY"]["value"]) == 100
    assert spec["terminationGracePeriodSeconds"] == drain + 30


@pytest.mark.parametrize(("drain", "margin"), [(600, 30), (60, 0), (3600, 120)])
def test_worker_grace_period_follows_drain_and_margin(render: Any, drain: int, margin: int) -> None:
    worker = render(
        {
            "worker": {
                "jobTimeoutSeconds": 60,
                "drainTimeoutSeconds": drain,
                "drainMarginSeconds": margin,
            }
        }
    ).get("Deployment", "worker")
    spec = pod_spec(worker)
    assert spec["terminationGracePeriodSeconds"] == drain + margin
    assert env_of(spec["containers"][0])["LANGSCALE_DRAIN_TIMEOUT"]["value"] == str(drain)


def test_explicit_grace_period_above_the_drain_window_is_kept(render: Any) -> None:
    worker = render({"worker": {"terminationGracePeriodSeconds": 900}}).get("Deployment", "worker")
    assert pod_spec(worker)["terminationGracePeriodSeconds"] == 900


def test_gateway_drains_endpoints_before_stopping(render: Any) -> None:
    spec = pod_spec(render().get("Deployment", "gateway"))
    container = spec["containers"][0]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    assert spec["terminationGracePeriodSeconds"] > 10
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_worker_probes_use_its_own_http_port(render: Any) -> None:
    container = pod_spec(render().get("Deployment", "worker"))["containers"][0]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9101, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert env_of(container)["LANGSCALE_WORKER_HTTP_PORT"]["value"] == "9101"


# --- security ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values_file", [None, *SCENARIOS], ids=lambda p: p.name if p else "default"
)
def test_every_pod_runs_locked_down(render: Any, values_file: Any) -> None:
    rendered = render(load_values(values_file) if values_file else {})
    pods = [o for o in rendered.objects if o["kind"] in POD_KINDS]
    assert pods
    for obj in pods:
        spec = pod_spec(obj)
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"]:
            if container["name"] not in CHART_CONTAINERS:
                continue
            ctx = container["securityContext"]
            assert ctx["runAsNonRoot"] is True, where
            assert ctx["runAsUser"] == 10001, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert container["imagePullPolicy"] == "IfNotPresent", where
            image = container["image"]
            assert not image.endswith(":latest") and (
                ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image
            ), where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, where


def test_default_images_are_pinned(render: Any) -> None:
    rendered = render()
    images = {
        pod_spec(o)["containers"][0]["image"] for o in rendered.objects if o["kind"] in POD_KINDS
    }
    # The helm test pod runs the gateway image: no other image to pull.
    assert images == {
        "ghcr.io/langscale/langscale-gateway:0.1.0",
        "ghcr.io/langscale/langscale-worker:0.1.0",
        "docker.io/valkey/valkey:8.1.10-alpine",
    }


def test_digest_pins_the_image(render: Any) -> None:
    digest = "sha256:" + "a" * 64
    deployment = render({"worker": {"image": {"digest": digest}}}).get("Deployment", "worker")
    assert (
        pod_spec(deployment)["containers"][0]["image"]
        == f"ghcr.io/langscale/langscale-worker@{digest}"
    )


def test_network_policies_restrict_each_component(render: Any) -> None:
    rendered = render()
    gateway = rendered.get("NetworkPolicy", "gateway")["spec"]
    assert gateway["policyTypes"] == ["Ingress", "Egress"]
    assert gateway["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    worker = rendered.get("NetworkPolicy", "worker")["spec"]
    assert worker["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}]}]
    egress_ports = [p["port"] for rule in worker["egress"] for p in rule["ports"]]
    assert egress_ports == [53, 53, 6379, 443]
    assert (
        worker["egress"][1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "redis"
    )
    redis = rendered.get("NetworkPolicy", "redis")["spec"]
    assert redis["egress"] == []
    sources = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in redis["ingress"][0]["from"]
    ]
    assert sources == ["gateway", "worker"]


def test_external_redis_egress_uses_configured_cidrs(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "external-redis-values.yaml"))
    worker = rendered.get("NetworkPolicy", "worker")["spec"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
        "ports": [{"port": 6380, "protocol": "TCP"}],
    } in worker["egress"]
    assert rendered.find("NetworkPolicy", "redis") is None


# --- labels and selectors -----------------------------------------------------------------


def test_labels_and_selectors(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "monitoring-values.yaml"))
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        assert set(labels) >= STANDARD_LABELS, obj["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "langscale"
    for kind in ("Deployment", "StatefulSet"):
        for obj in rendered.of_kind(kind):
            selector = obj["spec"]["selector"]["matchLabels"]
            assert set(selector) == SELECTOR_KEYS
            template_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= template_labels.items()
    for component in ("gateway", "worker", "redis"):
        pods = rendered.get("StatefulSet" if component == "redis" else "Deployment", component)
        pod_labels = pods["spec"]["template"]["metadata"]["labels"]
        for kind in (
            "Service",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
            "PodMonitor",
        ):
            for obj in rendered.of_kind(kind):
                if obj["metadata"]["labels"].get("app.kubernetes.io/component") != component:
                    continue
                spec = obj["spec"]
                selector = spec.get("selector") or spec.get("podSelector")
                selector = selector.get("matchLabels", selector)
                assert set(selector) == SELECTOR_KEYS, (kind, component)
                assert selector.items() <= pod_labels.items(), (kind, component)


def test_pdbs_exist_for_gateway_and_worker(render: Any) -> None:
    rendered = render()
    assert rendered.get("PodDisruptionBudget", "gateway")["spec"]["maxUnavailable"] == 1
    assert rendered.get("PodDisruptionBudget", "worker")["spec"]["maxUnavailable"] == "25%"


# --- configuration and secrets ---------------------------------------------------------------


def test_config_is_a_configmap_without_secrets_and_rolls_pods(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "auth-values.yaml"))
    configmap = next(
        o for o in rendered.of_kind("ConfigMap") if o["metadata"]["name"] == "rel-langscale"
    )
    data = configmap["data"]
    assert data["LANGSCALE_QUEUE_NAME"] == "langscale"
    assert data["LANGSCALE_RESULT_TTL"] == "86400"
    assert data["LANGSCALE_LLM_PROVIDER"] == "openai"
    assert data["LANGSCALE_AUTH_ENABLED"] == "true"
    assert data["LANGSCALE_PIPELINES"].startswith("chat=langscale_worker.pipelines:chat")
    for key, value in data.items():
        assert not re.search(r"PASSWORD|API_KEY$|REDIS_URL", key), key
        assert "redis://" not in value and "rediss://" not in value, key
    for component in ("gateway", "worker"):
        pod = rendered.get("Deployment", component)["spec"]["template"]
        assert re.fullmatch(r"[0-9a-f]{64}", pod["metadata"]["annotations"]["checksum/config"])
        assert pod["spec"]["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": "rel-langscale"}}
        ]
    changed = render({"config": {"resultTtlSeconds": 3600}})
    before = render().get("Deployment", "worker")["spec"]["template"]["metadata"]["annotations"][
        "checksum/config"
    ]
    after = changed.get("Deployment", "worker")["spec"]["template"]["metadata"]["annotations"][
        "checksum/config"
    ]
    assert before != after


def test_secrets_come_from_secret_key_refs(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "auth-values.yaml"))
    worker = env_of(pod_spec(rendered.get("Deployment", "worker"))["containers"][0])
    assert worker["LANGSCALE_OPENAI_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "langscale-openai", "key": "api-key"}
    }
    gateway_spec = pod_spec(rendered.get("Deployment", "gateway"))
    gateway = env_of(gateway_spec["containers"][0])
    assert gateway["LANGSCALE_API_KEYS_FILE"]["value"] == "/etc/langscale/auth/api-keys"
    assert "LANGSCALE_OPENAI_API_KEY" not in gateway  # the gateway never calls the LLM
    volume = next(v for v in gateway_spec["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == "langscale-api-keys"
    assert volume["secret"]["items"] == [{"key": "api-keys", "path": "api-keys"}]
    for env in (worker, gateway):
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
        assert "$(REDIS_PASSWORD)" in env["LANGSCALE_REDIS_URL"]["value"]


def test_redis_url_variants(render: Any) -> None:
    def redis_env(values: dict[str, Any]) -> dict[str, Any]:
        return env_of(pod_spec(render(values).get("Deployment", "worker"))["containers"][0])

    bundled = redis_env({})
    assert bundled["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "rel-langscale-redis-auth",
        "key": "redis-password",
    }
    assert (
        bundled["LANGSCALE_REDIS_URL"]["value"]
        == "redis://:$(REDIS_PASSWORD)@rel-langscale-redis:6379/0"
    )
    from_secret = redis_env(load_values(CHART_DIR / "ci" / "external-redis-url-secret-values.yaml"))
    assert from_secret["LANGSCALE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "langscale-redis",
        "key": "redis-url",
    }
    host = redis_env(load_values(CHART_DIR / "ci" / "external-redis-values.yaml"))
    assert host["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "langscale-redis",
        "key": "redis-password",
    }
    assert (
        host["LANGSCALE_REDIS_URL"]["value"]
        == "rediss://:$(REDIS_PASSWORD)@redis-master.data.svc.cluster.local:6380/2"
    )
    names = list(host)
    assert names.index("REDIS_PASSWORD") < names.index("LANGSCALE_REDIS_URL")  # $(VAR) needs order
    url = render(
        {
            "redis": {"enabled": False},
            "externalRedis": {"enabled": True, "url": "redis://:pw@r:6390/0"},
        }
    )
    secret = url.get("Secret", "redis")
    assert set(secret["data"]) == {"redis-url"}
    # The NetworkPolicy opens the URL's port.
    egress = url.get("NetworkPolicy", "worker")["spec"]["egress"]
    assert {"port": 6390, "protocol": "TCP"} in [p for rule in egress for p in rule["ports"]]
    assert "pw" not in json.dumps(url.of_kind("ConfigMap"))


def test_bundled_redis_is_durable_and_never_evicts(render: Any) -> None:
    rendered = render()
    sts = rendered.get("StatefulSet", "redis")
    container = pod_spec(sts)["containers"][0]
    command = container["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert (
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    )
    secret = rendered.get("Secret", "redis")
    assert set(secret["data"]) == {"redis-password"}


def test_telemetry_env(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "monitoring-values.yaml"))
    configmap = next(
        o for o in rendered.of_kind("ConfigMap") if o["metadata"]["name"] == "rel-langscale"
    )
    assert (
        configmap["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        == "http://otel-collector.observability:4317"
    )
    assert configmap["data"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    for component in ("gateway", "worker"):
        env = env_of(pod_spec(rendered.get("Deployment", component))["containers"][0])
        assert env["OTEL_SERVICE_NAME"]["value"] == f"langscale-{component}"
        assert env["OTEL_RESOURCE_ATTRIBUTES"]["value"].endswith(",deployment.environment=ci")
    default_cm = next(
        o for o in render().of_kind("ConfigMap") if o["metadata"]["name"] == "rel-langscale"
    )
    assert default_cm["data"]["OTEL_TRACES_EXPORTER"] == "none"


def test_monitoring_objects_are_off_by_default_and_load_the_files(render: Any) -> None:
    default_kinds = {o["kind"] for o in render().objects}
    assert not default_kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    rendered = render(load_values(CHART_DIR / "ci" / "monitoring-values.yaml"))
    monitor = rendered.get("ServiceMonitor", "gateway")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        rendered.get("PodMonitor", "worker")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    )
    rule = rendered.get("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(
        (CHART_DIR / "files" / "prometheus-rules.yaml").read_text()
    )
    dashboard = next(
        o for o in rendered.of_kind("ConfigMap") if o["metadata"]["name"].endswith("-dashboard")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["langscale.json"])["uid"] == "langscale-overview"


def test_placeholder_rules_and_dashboard_use_the_service_metrics() -> None:
    text = (CHART_DIR / "files" / "prometheus-rules.yaml").read_text() + (
        CHART_DIR / "files" / "grafana-dashboard.json"
    ).read_text()
    for metric in (
        "langscale_queue_backlog_jobs",
        "langscale_queue_ready_jobs",
        "langscale_queue_oldest_ready_age_seconds",
        "langscale_runs_total",
        "langscale_run_duration_seconds_bucket",
        "langscale_http_requests_total",
    ):
        assert metric in text


def test_ingress(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "ingress-values.yaml"))
    ingress = rendered.get("Ingress", "gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {
        "name": rendered.get("Service", "gateway")["metadata"]["name"],
        "port": {"name": "http"},
    }
    assert render().find("Ingress", "gateway") is None


def test_helm_test_pod_submits_a_run_and_waits(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "auth-values.yaml"))
    pod = rendered.get("Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    script = container["args"][0]
    compile(script, "helm-test", "exec")  # valid Python
    assert (
        '"POST", "/v1/runs"' in script and "/v1/runs/{run_id}" in script and '"succeeded"' in script
    )
    env = env_of(container)
    assert env["GATEWAY_URL"]["value"] == "http://rel-langscale-gateway.langscale.svc:8000"
    assert json.loads(env["RUN_INPUT"]["value"]) == {"question": "hi"}
    assert env["PIPELINE"]["value"] == "chat"
    assert env["API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "langscale-test-key",
        "key": "api-key",
    }


def test_notes_explain_the_autoscaling_target(render: Any) -> None:
    notes = render().notes
    assert "target 80 jobs per replica (concurrency 100 x 0.8)" in notes
    assert "prometheus-adapter" in notes


# --- bad values fail with clear messages ------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"worker": {"concurrency": "100"}}, "at '/worker/concurrency': got string, want integer"),
        ({"worker": {"concurrency": 0}}, "/worker/concurrency"),
        (
            {"worker": {"autoscaling": {"targetUtilization": 1.5}}},
            "/worker/autoscaling/targetUtilization",
        ),
        ({"worker": {"autoscaling": {"kind": "vpa"}}}, "/worker/autoscaling/kind"),
        ({"worker": {"autoscaling": {"metric": "depth"}}}, "/worker/autoscaling/metric"),
        (
            {"worker": {"autoscaling": {"treshold": 3}}},
            "additional properties 'treshold' not allowed",
        ),
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"worker": {"autoscaling": {"enabled": "yes"}}}, "got string, want boolean"),
        ({"llm": {"provider": "anthropic"}}, "/llm/provider"),
    ],
)
def test_schema_rejects_bad_values(render_error: Any, values: dict[str, Any], message: str) -> None:
    error = render_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "redis": {"enabled": True},
                "externalRedis": {"enabled": True, "url": "redis://r:6379/0"},
            },
            "redis.enabled and externalRedis.enabled are both true; choose exactly one",
        ),
        (
            {"redis": {"enabled": False}},
            "no Redis configured; set exactly one of redis.enabled=true",
        ),
        (
            {"redis": {"enabled": False}, "externalRedis": {"enabled": True}},
            "externalRedis.enabled needs externalRedis.url, externalRedis.host",
        ),
        (
            {
                "redis": {"enabled": False},
                "externalRedis": {"enabled": True, "url": "redis://a", "host": "b"},
            },
            "set either externalRedis.url or externalRedis.host, not both",
        ),
        (
            {
                "redis": {"enabled": False},
                "externalRedis": {"enabled": True, "existingSecretUrlKey": "u"},
            },
            "externalRedis.existingSecretUrlKey is set but externalRedis.existingSecret is empty",
        ),
        (
            {"worker": {"terminationGracePeriodSeconds": 300}},
            "worker.terminationGracePeriodSeconds (300) is smaller than worker.drainTimeoutSeconds"
            " + worker.drainMarginSeconds (330 + 30 = 360)",
        ),
        (
            {"worker": {"jobTimeoutSeconds": 600}},
            "worker.jobTimeoutSeconds (600) is larger than worker.drainTimeoutSeconds (330)",
        ),
        (
            {"gateway": {"preStopSleepSeconds": 40, "terminationGracePeriodSeconds": 30}},
            "gateway.terminationGracePeriodSeconds (30) is smaller than "
            "gateway.preStopSleepSeconds + gateway.drainTimeoutSeconds + "
            "gateway.drainMarginSeconds (40 + 25 + 5 = 70)",
        ),
        (
            {"worker": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
            "worker.autoscaling.minReplicas (5) is larger than worker.autoscaling.maxReplicas (2)",
        ),
        (
            {"worker": {"autoscaling": {"kind": "keda", "keda": {"trigger": "prometheus"}}}},
            "keda.trigger=prometheus needs worker.autoscaling.keda.prometheusServerAddress",
        ),
        ({"auth": {"enabled": True}}, "auth.enabled needs auth.existingSecret"),
    ],
)
def test_inconsistent_values_fail_the_render(
    render_error: Any, values: dict[str, Any], message: str
) -> None:
    assert message in render_error(values)


def test_long_job_timeout_is_accepted_when_explicitly_allowed(render: Any) -> None:
    worker = render({"worker": {"jobTimeoutSeconds": 600, "requireDrainCoversJobTimeout": False}})
    assert pod_spec(worker.get("Deployment", "worker"))["terminationGracePeriodSeconds"] == 360


def test_external_redis_scenario_renders_no_bundled_redis(render: Any) -> None:
    rendered = render(EXTERNAL_REDIS)
    assert rendered.of_kind("StatefulSet") == []
    assert rendered.find("Secret", "redis") is None
