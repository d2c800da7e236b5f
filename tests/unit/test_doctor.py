"""`langscale doctor`'s checks against Kubernetes API objects (no cluster needed)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from langscale import doctor
from langscale.doctor import Facts, WorkerPool


def hpa(average_value: str = "80", scaling_active: bool = True) -> k8s.V2HorizontalPodAutoscaler:
    return k8s.V2HorizontalPodAutoscaler(
        metadata=k8s.V1ObjectMeta(name="ls-langscale-worker"),
        spec=k8s.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s.V2CrossVersionObjectReference(
                kind="Deployment", name="ls-langscale-worker"
            ),
            min_replicas=1,
            max_replicas=4,
            metrics=[
                k8s.V2MetricSpec(
                    type="External",
                    external=k8s.V2ExternalMetricSource(
                        metric=k8s.V2MetricIdentifier(name="langscale_queue_backlog_jobs"),
                        target=k8s.V2MetricTarget(type="AverageValue", average_value=average_value),
                    ),
                )
            ],
        ),
        status=k8s.V2HorizontalPodAutoscalerStatus(
            desired_replicas=1,
            conditions=[
                k8s.V2HorizontalPodAutoscalerCondition(
                    type="ScalingActive",
                    status="True" if scaling_active else "False",
                    reason="ValidMetricFound" if scaling_active else "FailedGetExternalMetric",
                    message="" if scaling_active else "unable to get external metric",
                )
            ],
        ),
    )


def deployment(
    component: str,
    grace: int | None = 360,
    replicas: int = 2,
    ready: int = 2,
    env: dict[str, str] | None = None,
) -> k8s.V1Deployment:
    container = k8s.V1Container(
        name=component,
        env=[k8s.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()],
        env_from=[
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="ls-langscale"))
        ],
    )
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(
            name=f"ls-langscale-{component}", labels={doctor.COMPONENT: component}
        ),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels={doctor.COMPONENT: component}),
            template=k8s.V1PodTemplateSpec(
                spec=k8s.V1PodSpec(containers=[container], termination_grace_period_seconds=grace)
            ),
        ),
        status=k8s.V1DeploymentStatus(ready_replicas=ready),
    )


WORKER_ENV = {
    "LANGSCALE_WORKER_CONCURRENCY": "100",
    "LANGSCALE_DRAIN_TIMEOUT": "330",
    "LANGSCALE_JOB_TIMEOUT": "300",
}


def facts(**changes: object) -> Facts:
    worker = deployment("worker", env=WORKER_ENV)
    base = Facts(
        namespace="langscale",
        release="ls",
        gateway=deployment("gateway", grace=40),
        gateway_env={"LANGSCALE_AUTH_ENABLED": "false"},
        gateway_service=k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="ls-langscale-gateway"),
            spec=k8s.V1ServiceSpec(type="ClusterIP"),
        ),
        workers=[WorkerPool("ls-langscale-worker", worker, dict(WORKER_ENV), hpa=hpa())],
        queue={"ready": 10, "in_progress": 150, "backlog": 160},
        metrics={("ls-langscale-worker", "langscale_queue_backlog_jobs"): (160.0, "")},
        redis_config={"appendonly": "yes", "maxmemory-policy": "noeviction"},
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def by_name(results: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {r.name.split("[")[0]: r for r in results}


def test_a_healthy_release_passes_every_check_and_exits_0() -> None:
    results = doctor.checks(facts())
    assert [r.status for r in results] == ["pass"] * len(results), doctor.render(results)
    assert {
        "grace",
        "hpa-target",
        "hpa-active",
        "external-metric",
        "capacity",
        "redis",
        "auth",
    } <= by_name(results).keys()
    assert doctor.exit_code(results) == 0


def test_a_grace_period_shorter_than_the_drain_fails_with_the_fix() -> None:
    check = doctor.check_grace("w", grace_seconds=30, drain_seconds=330, job_timeout=300)
    assert check.status == "fail"
    assert "30 < drain timeout 330" in check.message
    assert "worker.terminationGracePeriodSeconds" in check.fix


def test_a_job_timeout_longer_than_the_drain_is_a_warning() -> None:
    assert doctor.check_grace("w", 400, 330, 600).status == "warn"


@pytest.mark.parametrize(
    ("target", "status"), [("80", "pass"), ("150", "fail"), ("20", "warn"), ("37500m", "pass")]
)
def test_the_hpa_target_is_judged_against_worker_concurrency(target: str, status: str) -> None:
    check = doctor.check_hpa_target("w", hpa(target), concurrency=100)
    assert check.status == status, check


def test_an_external_metric_that_is_not_served_fails() -> None:
    results = doctor.checks(
        facts(
            metrics={
                ("ls-langscale-worker", "langscale_queue_backlog_jobs"): (None, "404 Not Found")
            }
        )
    )
    check = by_name(results)["external-metric"]
    assert check.status == "fail"
    assert "prometheus-adapter" in check.fix
    assert doctor.exit_code(results) == 2


def test_an_external_metric_far_from_the_gateways_figure_is_a_warning() -> None:
    check = doctor.check_external_metric(
        "w", "langscale_queue_backlog_jobs", 10.0, "", {"backlog": 160}
    )
    assert check.status == "warn"
    assert "/v1/queue says backlog = 160" in check.message


def test_a_ready_metric_is_compared_with_the_ready_figure() -> None:
    check = doctor.check_external_metric(
        "w", "langscale_queue_ready_jobs", 10.0, "", {"ready": 10, "backlog": 160}
    )
    assert check.status == "pass"


def test_an_inactive_hpa_fails() -> None:
    results = doctor.checks(
        facts(
            workers=[
                WorkerPool(
                    "ls-langscale-worker",
                    deployment("worker", env=WORKER_ENV),
                    dict(WORKER_ENV),
                    hpa=hpa(scaling_active=False),
                )
            ]
        )
    )
    assert by_name(results)["hpa-active"].status == "fail"


def test_a_backlog_with_no_ready_worker_fails_and_names_the_waiting_reason() -> None:
    check = doctor.check_capacity(
        "w",
        ready=0,
        desired=2,
        concurrency=100,
        backlog=50,
        max_replicas=4,
        not_ready_reasons=["ImagePullBackOff"],
    )
    assert check.status == "fail"
    assert "ImagePullBackOff" in check.message


def test_a_backlog_over_capacity_at_max_replicas_is_a_warning() -> None:
    check = doctor.check_capacity(
        "w", ready=4, desired=4, concurrency=10, backlog=100, max_replicas=4, not_ready_reasons=[]
    )
    assert check.status == "warn"
    assert "maxReplicas" in check.fix


@pytest.mark.parametrize(
    ("config", "status"),
    [
        ({"appendonly": "yes", "maxmemory-policy": "noeviction"}, "pass"),
        ({"appendonly": "no", "maxmemory-policy": "noeviction"}, "fail"),
        ({"appendonly": "yes", "maxmemory-policy": "allkeys-lru"}, "fail"),
        (None, "warn"),
    ],
)
def test_redis_must_persist_and_never_evict(config: dict[str, str] | None, status: str) -> None:
    assert doctor.check_redis_config(config, "unreachable").status == status


def test_an_exposed_gateway_without_auth_fails() -> None:
    ingress = k8s.V1Ingress(
        metadata=k8s.V1ObjectMeta(name="public"),
        spec=k8s.V1IngressSpec(
            rules=[
                k8s.V1IngressRule(
                    http=k8s.V1HTTPIngressRuleValue(
                        paths=[
                            k8s.V1HTTPIngressPath(
                                path="/",
                                path_type="Prefix",
                                backend=k8s.V1IngressBackend(
                                    service=k8s.V1IngressServiceBackend(name="ls-langscale-gateway")
                                ),
                            )
                        ]
                    )
                )
            ]
        ),
    )
    results = doctor.checks(facts(ingresses=[ingress]))
    assert by_name(results)["auth"].status == "fail"
    assert "Ingress public" in by_name(results)["auth"].message
    results = doctor.checks(
        facts(ingresses=[ingress], gateway_env={"LANGSCALE_AUTH_ENABLED": "true"})
    )
    assert by_name(results)["auth"].status == "pass"


def test_a_missing_release_fails_without_further_checks() -> None:
    results = doctor.checks(facts(gateway=None, workers=[]))
    assert [r.name for r in results] == ["release", "release"]
    assert doctor.exit_code(results) == 2


def test_env_comes_from_config_maps_then_literal_values() -> None:
    env = doctor.container_env(
        deployment("worker", env={"A": "literal"}), {"ls-langscale": {"A": "cm", "B": "cm"}}
    )
    assert env == {"A": "literal", "B": "cm"}


def test_quantities_parse_as_kubernetes_writes_them() -> None:
    assert doctor.parse_quantity("37500m") == 37.5
    assert doctor.parse_quantity("80") == 80
    assert doctor.parse_quantity("1k") == 1000
