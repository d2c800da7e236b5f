"""``langscale doctor``: check a running langscale release the way an SRE would.

    langscale doctor -n langscale [--release langscale] [--kubeconfig F] [--context C]
                     [--redis-url URL] [--json]

It reads the release's objects with the ``kubernetes`` client (the identity of your
kubeconfig; read access to Deployments, HPAs, ConfigMaps, Secrets, Services, Ingresses and
the external metrics API is enough) and asks the gateway for ``/v1/queue`` through the API
server's Service proxy, then prints one line per check:

    PASS  external-metric   langscale_queue_backlog_jobs = 12 (the gateway's /v1/queue says 12)
    WARN  hpa-target        target 150/replica is above worker concurrency 100 ...
          fix: set worker.autoscaling.targetUtilization <= 1 ...
    FAIL  grace             terminationGracePeriodSeconds 30 < drain timeout 330 ...

Exit code: 0 every check passed, 1 warnings only, 2 at least one failure (3: could not look
at the release at all). The checks are pure functions of Kubernetes objects and figures
(``check_*``), so they are tested without a cluster; ``gather`` reads a real one.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

Status = Literal["pass", "warn", "fail"]
EXIT_CODES = {"pass": 0, "warn": 1, "fail": 2}
CANNOT_LOOK = 3

COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
# How far an external metric may be from the gateway's own figure and still agree: the two
# are read a moment apart, and adapters see the queue through a scrape interval.
METRIC_TOLERANCE_ABSOLUTE = 2.0
METRIC_TOLERANCE_RELATIVE = 0.2


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    message: str
    fix: str = ""


def passed(name: str, message: str) -> Check:
    return Check("pass", name, message)


def warned(name: str, message: str, fix: str) -> Check:
    return Check("warn", name, message, fix)


def failed(name: str, message: str, fix: str) -> Check:
    return Check("fail", name, message, fix)


# --------------------------------------------------------------------------------------------
# Quantities and env
# --------------------------------------------------------------------------------------------

_SUFFIX = {
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
}


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("80", "37500m", "1k") as a float."""
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|Ki|Mi|Gi)?", value.strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2) or ""]


def _get(obj: Any, *path: str) -> Any:
    """Walk attributes of kubernetes client models, or keys of plain dicts, None-safe."""
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj


def container_env(deployment: Any, config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """Literal env of the first container: envFrom ConfigMaps, then env values (later wins)."""
    containers = _get(deployment, "spec", "template", "spec", "containers") or []
    if not containers:
        return {}
    env: dict[str, str] = {}
    for source in _get(containers[0], "env_from") or []:
        name = _get(source, "config_map_ref", "name")
        if name:
            env.update(config_maps.get(name, {}))
    for item in _get(containers[0], "env") or []:
        value = _get(item, "value")
        if value is not None:
            env[_get(item, "name")] = value
    return env


# --------------------------------------------------------------------------------------------
# The checks: pure functions
# --------------------------------------------------------------------------------------------


def check_hpa_target(name: str, hpa: Any, concurrency: int) -> Check:
    """The per-replica target against what one worker runs at once."""
    check = f"hpa-target[{name}]"
    targets = [
        _get(metric, "external", "target", "average_value")
        for metric in _get(hpa, "spec", "metrics") or []
        if _get(metric, "type") == "External"
    ]
    targets = [t for t in targets if t is not None]
    if not targets:
        return warned(
            check,
            f"HPA {_get(hpa, 'metadata', 'name')} has no External AverageValue target on the queue",
            "scale workers on the queue backlog: worker.autoscaling.kind=hpa or keda",
        )
    target = parse_quantity(targets[0])
    utilization = target / concurrency if concurrency else math.inf
    described = f"target {target:g}/replica = {utilization:.2f} x worker concurrency {concurrency}"
    if utilization > 1.0:
        return failed(
            check,
            f"{described}: runs wait in the queue before the HPA adds a worker",
            "set worker.autoscaling.targetUtilization at or below 1 (0.8 is the default)",
        )
    if utilization < 0.3:
        return warned(
            check,
            f"{described}: workers stay mostly idle",
            "raise worker.autoscaling.targetUtilization "
            "(langscale autoscale simulate --sweep-target)",
        )
    return passed(check, described)


def check_grace(
    name: str, grace_seconds: int | None, drain_seconds: float, job_timeout: float
) -> Check:
    """Kubernetes must not SIGKILL a worker before its drain window has passed."""
    check = f"grace[{name}]"
    grace = 30 if grace_seconds is None else grace_seconds
    if grace < drain_seconds:
        return failed(
            check,
            f"terminationGracePeriodSeconds {grace} < drain timeout {drain_seconds:g}s: a worker "
            "draining runs is killed mid-drain and its runs wait for their leases to lapse",
            "let the chart derive it (worker.terminationGracePeriodSeconds: null) or lower "
            "worker.drainTimeoutSeconds",
        )
    if job_timeout > drain_seconds:
        return warned(
            check,
            f"job timeout {job_timeout:g}s > drain timeout {drain_seconds:g}s: a run started "
            "just before SIGTERM is stopped and retried elsewhere",
            "raise worker.drainTimeoutSeconds to at least worker.jobTimeoutSeconds",
        )
    return passed(
        check, f"grace {grace}s >= drain {drain_seconds:g}s >= job timeout {job_timeout:g}s"
    )


def pool_queue(queue: dict[str, Any] | None, pool: str) -> dict[str, Any] | None:
    """A worker pool's figures in the gateway's /v1/queue: its entry under ``pools`` (a pool
    that no worker announced has none: all zero); a gateway without pools: the total."""
    if queue is None or "pools" not in queue:
        return queue
    return queue["pools"].get(pool, {"ready": 0, "in_progress": 0, "backlog": 0})


def metric_field(metric_name: str) -> str:
    """Which /v1/queue field an external metric's name stands for."""
    return "ready" if "ready" in metric_name else "backlog"


def check_external_metric(
    name: str, metric: str, served: float | None, error: str, queue: dict[str, Any] | None
) -> Check:
    check = f"external-metric[{name}]"
    if served is None:
        return failed(
            check,
            f"the HPA's External metric {metric} is not served: {error}",
            "install an external metrics adapter: prometheus-adapter with "
            "deploy/helm/langscale/examples/prometheus-adapter-values.yaml, or use "
            "worker.autoscaling.kind=keda",
        )
    if queue is None:
        return warned(
            check,
            f"{metric} = {served:g}, but the gateway's /v1/queue could not be read to compare",
            "check the gateway pods (kubectl get pods) and its Service",
        )
    expected = float(queue.get(metric_field(metric), 0))
    if abs(served - expected) <= max(
        METRIC_TOLERANCE_ABSOLUTE, METRIC_TOLERANCE_RELATIVE * expected
    ):
        return passed(check, f"{metric} = {served:g} (the gateway's /v1/queue says {expected:g})")
    return warned(
        check,
        f"{metric} = {served:g} but /v1/queue says {metric_field(metric)} = {expected:g}",
        "the adapter reads another queue or lags: check its rule (max by (queue), the "
        "queue label) and the scrape interval",
    )


def check_scaling_active(name: str, hpa: Any) -> Check:
    check = f"hpa-active[{name}]"
    for condition in _get(hpa, "status", "conditions") or []:
        if _get(condition, "type") == "ScalingActive" and _get(condition, "status") == "False":
            return failed(
                check,
                f"HPA {_get(hpa, 'metadata', 'name')} is not scaling: "
                f"{_get(condition, 'reason')}: {_get(condition, 'message')}",
                "fix the metric the HPA reads (see external-metric)",
            )
    return passed(check, f"HPA {_get(hpa, 'metadata', 'name')} is active")


def check_capacity(
    name: str,
    ready: int,
    desired: int,
    concurrency: int,
    backlog: float | None,
    max_replicas: int | None,
    not_ready_reasons: list[str],
) -> Check:
    """Pods Ready against the work waiting for them."""
    check = f"capacity[{name}]"
    reasons = f" ({'; '.join(sorted(set(not_ready_reasons)))})" if not_ready_reasons else ""
    if backlog and ready == 0:
        return failed(
            check,
            f"{backlog:g} runs in the backlog and no worker pod Ready{reasons}",
            "kubectl describe pods of the worker Deployment; check image, Redis URL and limits",
        )
    if ready < desired:
        return warned(
            check,
            f"{ready} of {desired} worker pods Ready{reasons}",
            "kubectl describe the pods that are not Ready",
        )
    capacity = ready * concurrency
    if (
        backlog is not None
        and backlog > capacity
        and max_replicas is not None
        and desired >= max_replicas
    ):
        return warned(
            check,
            f"backlog {backlog:g} > capacity {capacity} ({ready} pods x {concurrency}) "
            f"at maxReplicas {max_replicas}",
            "raise worker.autoscaling.maxReplicas (mind the LLM provider's rate limits) or "
            "worker.concurrency",
        )
    shown = "unknown" if backlog is None else f"{backlog:g}"
    return passed(check, f"{ready}/{desired} pods Ready, capacity {capacity} runs, backlog {shown}")


def check_redis_config(config: dict[str, str] | None, error: str = "") -> Check:
    if config is None:
        return warned(
            "redis",
            f"could not read Redis's configuration: {error}",
            "run doctor where Redis is reachable, or pass --redis-url; a managed Redis may "
            "refuse CONFIG GET: check appendonly and maxmemory-policy in its console",
        )
    problems = []
    if config.get("maxmemory-policy") != "noeviction":
        problems.append(
            f"maxmemory-policy is {config.get('maxmemory-policy')!r}: Redis may evict queued runs"
        )
    if config.get("appendonly") != "yes":
        problems.append("appendonly is off: a Redis restart loses queued and running runs")
    if problems:
        return failed(
            "redis",
            "; ".join(problems),
            "CONFIG SET appendonly yes and maxmemory-policy noeviction (and in its config file)",
        )
    return passed("redis", "appendonly yes, maxmemory-policy noeviction")


def check_auth(auth_enabled: bool, exposures: list[str]) -> Check:
    if auth_enabled:
        return passed(
            "auth",
            "API keys required" + (f" (exposed: {', '.join(exposures)})" if exposures else ""),
        )
    if exposures:
        return failed(
            "auth",
            f"the gateway is exposed ({', '.join(exposures)}) without API keys",
            "set auth.enabled=true with auth.existingSecret (langscale hash-key), or stop "
            "exposing the gateway",
        )
    return passed("auth", "auth off, and the gateway is reachable only inside the cluster")


# --------------------------------------------------------------------------------------------
# Reading a real cluster
# --------------------------------------------------------------------------------------------


@dataclass
class WorkerPool:
    name: str
    deployment: Any
    env: dict[str, str]
    hpa: Any = None
    pods: list[Any] = field(default_factory=list)


@dataclass
class Facts:
    namespace: str
    release: str
    gateway: Any = None
    gateway_env: dict[str, str] = field(default_factory=dict)
    gateway_service: Any = None
    workers: list[WorkerPool] = field(default_factory=list)
    ingresses: list[Any] = field(default_factory=list)
    queue: dict[str, Any] | None = None
    queue_error: str = ""
    metrics: dict[tuple[str, str], tuple[float | None, str]] = field(default_factory=dict)
    redis_config: dict[str, str] | None = None
    redis_error: str = ""


def _selector_string(selector: Any) -> str:
    labels = _get(selector, "match_labels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def gather(api_client: Any, namespace: str, release: str, redis_url: str | None = None) -> Facts:
    from kubernetes import client as k8s

    # The client's models are Optional all the way down; the objects read here exist.
    core: Any = k8s.CoreV1Api(api_client)
    apps: Any = k8s.AppsV1Api(api_client)
    autoscaling: Any = k8s.AutoscalingV2Api(api_client)
    networking: Any = k8s.NetworkingV1Api(api_client)
    facts = Facts(namespace, release)
    selector = f"{INSTANCE}={release}"
    config_maps = {
        cm.metadata.name: dict(cm.data or {})
        for cm in core.list_namespaced_config_map(namespace, label_selector=selector).items
    }
    hpas = autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items
    for deployment in apps.list_namespaced_deployment(namespace, label_selector=selector).items:
        component = (deployment.metadata.labels or {}).get(COMPONENT, "")
        env = container_env(deployment, config_maps)
        if component == "gateway":
            facts.gateway, facts.gateway_env = deployment, env
        elif "LANGSCALE_WORKER_CONCURRENCY" in env or "LANGSCALE_DRAIN_TIMEOUT" in env:
            pool = WorkerPool(deployment.metadata.name, deployment, env)
            pool.hpa = next(
                (h for h in hpas if h.spec.scale_target_ref.name == deployment.metadata.name), None
            )
            pool.pods = core.list_namespaced_pod(
                namespace, label_selector=_selector_string(deployment.spec.selector)
            ).items
            facts.workers.append(pool)
    for service in core.list_namespaced_service(namespace, label_selector=selector).items:
        if (service.metadata.labels or {}).get(COMPONENT) == "gateway":
            facts.gateway_service = service
    facts.ingresses = networking.list_namespaced_ingress(namespace).items
    if facts.gateway_service is not None:
        facts.queue, facts.queue_error = _read_queue(api_client, facts.gateway_service)
    for pool in facts.workers:
        for metric in _get(pool.hpa, "spec", "metrics") or []:
            if metric.type != "External":
                continue
            name = metric.external.metric.name
            label_selector = _selector_string(metric.external.metric.selector)
            facts.metrics[(pool.name, name)] = _read_external_metric(
                api_client, namespace, name, label_selector
            )
    url = redis_url or _redis_url_from_secret(core, namespace, facts)
    if url:
        facts.redis_config, facts.redis_error = _read_redis_config(core, url, namespace)
    else:
        facts.redis_error = "no LANGSCALE_REDIS_URL found on the gateway"
    return facts


def _read_queue(api_client: Any, service: Any) -> tuple[dict[str, Any] | None, str]:
    """GET /v1/queue of the gateway through the API server's Service proxy."""
    from kubernetes import client as k8s

    port = next((p for p in service.spec.ports if p.name == "http"), service.spec.ports[0])
    name = f"{service.metadata.name}:{port.name or port.port}"
    namespace = service.metadata.namespace
    try:
        # Raw body: with content preloaded the client hands back str() of a parsed dict.
        response: Any = k8s.CoreV1Api(api_client).connect_get_namespaced_service_proxy_with_path(
            name, namespace, "v1/queue", _request_timeout=10, _preload_content=False
        )
        data = json.loads(response.data)
    except Exception as error:
        return None, f"services/{name}/proxy/v1/queue in {namespace}: {_reason(error)}"
    return (data if isinstance(data, dict) else None), ""


def _reason(error: Exception) -> str:
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    return f"{status} {reason}" if status else str(error)


def _read_external_metric(
    api_client: Any, namespace: str, metric: str, label_selector: str
) -> tuple[float | None, str]:
    """The metric as the HPA reads it. external.metrics.k8s.io/v1beta1 has the path shape of
    a namespaced custom object list, so the client's generic call reads it."""
    from kubernetes import client as k8s

    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
    try:
        data: Any = k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(
            "external.metrics.k8s.io",
            "v1beta1",
            namespace,
            metric,
            label_selector=label_selector or None,
            _request_timeout=10,
        )
    except Exception as error:
        return None, f"GET {path}: {_reason(error)}"
    items = (data or {}).get("items") or []
    if not items:
        return None, f"GET {path}: no value (is the queue label right?)"
    return sum(parse_quantity(item["value"]) for item in items), ""


def resolved_env(core: Any, namespace: str, container: Any) -> dict[str, str]:
    """A container's env entries as the kubelet gives them: values, Secret and ConfigMap
    keys, and $(VAR) references to earlier entries expanded."""
    import base64

    env: dict[str, str] = {}
    for item in _get(container, "env") or []:
        value = _get(item, "value")
        if value is not None:
            env[item.name] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value
            )
            continue
        secret_ref = _get(item, "value_from", "secret_key_ref")
        map_ref = _get(item, "value_from", "config_map_key_ref")
        try:
            if secret_ref is not None:
                data = core.read_namespaced_secret(secret_ref.name, namespace).data or {}
                env[item.name] = base64.b64decode(data[secret_ref.key]).decode()
            elif map_ref is not None:
                data = core.read_namespaced_config_map(map_ref.name, namespace).data or {}
                env[item.name] = data[map_ref.key]
        except Exception:  # an optional key, or no right to read it: leave it out
            continue
    return env


def _redis_url_from_secret(core: Any, namespace: str, facts: Facts) -> str | None:
    for deployment in [facts.gateway, *(p.deployment for p in facts.workers)]:
        containers = _get(deployment, "spec", "template", "spec", "containers") or []
        if containers:
            url = resolved_env(core, namespace, containers[0]).get("LANGSCALE_REDIS_URL")
            if url:
                return url
    return None


def _cluster_address(core: Any, url: str, namespace: str) -> str:
    """A Redis URL naming a Service by its cluster DNS name (`name`, `name.ns`,
    `name.ns.svc[.cluster.local]`) made usable outside the cluster's DNS: the Service's
    ClusterIP instead (reachable from a node). Other hosts are left as they are."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    match = re.fullmatch(r"([a-z0-9-]+)(?:\.([a-z0-9-]+)(?:\.svc(?:\.cluster\.local)?)?)?", host)
    if not match:
        return url
    try:
        name, service_namespace = match.group(1), match.group(2) or namespace
        ip = core.read_namespaced_service(name, service_namespace).spec.cluster_ip
    except Exception:
        return url
    netloc = parts.netloc.replace(host, ip)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _read_redis_config(core: Any, url: str, namespace: str) -> tuple[dict[str, str] | None, str]:
    import redis

    try:
        client = redis.Redis.from_url(
            _cluster_address(core, url, namespace),
            socket_connect_timeout=3,
            socket_timeout=3,
            decode_responses=True,
        )
        config: dict[str, str] = {}
        for key in ("appendonly", "maxmemory-policy"):
            config.update(client.config_get(key))  # type: ignore[arg-type]
        client.close()
    except (redis.RedisError, OSError) as error:
        host = urlsplit(url).hostname
        return None, f"{host}: {error}"
    return config, ""


# --------------------------------------------------------------------------------------------
# From facts to checks
# --------------------------------------------------------------------------------------------


def _float_env(env: dict[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError:
        return default


def _not_ready_reasons(pods: list[Any]) -> list[str]:
    reasons = []
    for pod in pods:
        for status in _get(pod, "status", "container_statuses") or []:
            waiting = _get(status, "state", "waiting")
            if waiting is not None and _get(waiting, "reason"):
                reasons.append(str(_get(waiting, "reason")))
    return reasons


def exposures(gateway_service: Any, ingresses: list[Any]) -> list[str]:
    found = []
    service_name = _get(gateway_service, "metadata", "name")
    kind = _get(gateway_service, "spec", "type")
    if kind in ("NodePort", "LoadBalancer"):
        found.append(f"Service type {kind}")
    for ingress in ingresses:
        backends = [
            _get(path, "backend", "service", "name")
            for rule in _get(ingress, "spec", "rules") or []
            for path in _get(rule, "http", "paths") or []
        ]
        if service_name in backends:
            found.append(f"Ingress {_get(ingress, 'metadata', 'name')}")
    return found


def checks(facts: Facts) -> list[Check]:
    results: list[Check] = []
    if facts.gateway is None:
        results.append(
            failed(
                "release",
                f"no gateway Deployment of release {facts.release!r} in {facts.namespace}",
                "check --namespace and --release (helm list -A)",
            )
        )
    if not facts.workers:
        results.append(
            failed(
                "release",
                f"no worker Deployment of release {facts.release!r} in {facts.namespace}",
                "check --namespace and --release (helm list -A)",
            )
        )
    if facts.gateway is None or not facts.workers:
        return results
    if facts.queue is None:
        results.append(
            failed(
                "gateway-queue",
                f"the gateway's /v1/queue did not answer: {facts.queue_error}",
                "kubectl get pods -l app.kubernetes.io/component=gateway; check readiness",
            )
        )
    for pool in facts.workers:
        queue = pool_queue(facts.queue, pool.env.get("LANGSCALE_WORKER_POOL", "default"))
        backlog = None if queue is None else float(queue.get("backlog", 0))
        concurrency = int(_float_env(pool.env, "LANGSCALE_WORKER_CONCURRENCY", 100))
        drain = _float_env(pool.env, "LANGSCALE_DRAIN_TIMEOUT", 60)
        job_timeout = _float_env(pool.env, "LANGSCALE_JOB_TIMEOUT", 300)
        spec = pool.deployment.spec
        desired = int(spec.replicas if spec.replicas is not None else 1)
        ready = int(_get(pool.deployment, "status", "ready_replicas") or 0)
        max_replicas = _get(pool.hpa, "spec", "max_replicas")
        results.append(
            check_grace(
                pool.name, spec.template.spec.termination_grace_period_seconds, drain, job_timeout
            )
        )
        if pool.hpa is None:
            results.append(
                warned(
                    f"autoscaling[{pool.name}]",
                    "no HPA or KEDA ScaledObject scales these workers",
                    "worker.autoscaling.enabled=true (kind hpa or keda)",
                )
            )
        else:
            results.append(check_hpa_target(pool.name, pool.hpa, concurrency))
            results.append(check_scaling_active(pool.name, pool.hpa))
            for (pool_name, metric), (value, error) in facts.metrics.items():
                if pool_name == pool.name:
                    results.append(check_external_metric(pool.name, metric, value, error, queue))
        results.append(
            check_capacity(
                pool.name,
                ready,
                desired,
                concurrency,
                backlog,
                max_replicas,
                _not_ready_reasons(pool.pods),
            )
        )
    results.append(check_redis_config(facts.redis_config, facts.redis_error))
    auth = facts.gateway_env.get("LANGSCALE_AUTH_ENABLED", "false").lower() == "true"
    results.append(check_auth(auth, exposures(facts.gateway_service, facts.ingresses)))
    return results


def exit_code(results: list[Check]) -> int:
    return max((EXIT_CODES[r.status] for r in results), default=0)


def render(results: list[Check]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.status.upper():4}  {r.name:28} {r.message}")
        if r.fix and r.status != "pass":
            lines.append(f"{'':4}  {'':28} fix: {r.fix}")
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "warn", "fail")}
    lines.append(f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed")
    return "\n".join(lines)


def add_parser(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check a release on Kubernetes: autoscaling metric, grace, Redis, auth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("-n", "--namespace", default="langscale")
    doctor.add_argument("--release", default="langscale", help="helm release name")
    doctor.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )
    doctor.add_argument("--context", help="kubeconfig context")
    doctor.add_argument("--redis-url", help="reach Redis at this URL instead of the release's")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        from kubernetes import config as k8s_config
    except ImportError:
        print(
            "langscale doctor needs the kubernetes client: pip install kubernetes", file=sys.stderr
        )
        return CANNOT_LOOK
    try:
        api_client = k8s_config.new_client_from_config(
            config_file=args.kubeconfig, context=args.context
        )
        facts = gather(api_client, args.namespace, args.release, args.redis_url)
    except Exception as error:
        print(f"langscale doctor: cannot read the release: {error}", file=sys.stderr)
        return CANNOT_LOOK
    results = checks(facts)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(render(results))
    return exit_code(results)
