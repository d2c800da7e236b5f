"""What the e2e tests do to the cluster: helm, the `kubernetes` Python client, waiting."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from localcluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "langscale"
VALUES = Path(__file__).resolve().parent / "values"
LOCAL_IMAGES = CHART / "examples" / "local-images-values.yaml"


def poll(check: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    """Call `check` until it returns something truthy (returned); fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (k8s.ApiException, httpx.HTTPError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not true after {timeout:.0f}s (last: {last!r})")


class Kube:
    def __init__(self, cluster: Cluster, images: list[str]) -> None:
        self.cluster = cluster
        self.kubeconfig = str(cluster.kubeconfig)
        api = k8s_config.new_client_from_config(config_file=self.kubeconfig)
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.autoscaling = k8s.AutoscalingV2Api(api)
        self.custom = k8s.CustomObjectsApi(api)
        self.registration = k8s.ApiregistrationV1Api(api)
        self.api = api
        self.images = images

    # ---- helm ----

    def helm(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "HELM_CACHE_HOME": str(self.cluster.run_dir / "helm"),
            "HELM_CONFIG_HOME": str(self.cluster.run_dir / "helm"),
            "HELM_DATA_HOME": str(self.cluster.run_dir / "helm"),
        }
        result = subprocess.run(
            [str(self.cluster.build.bin["helm"]), *args],
            env=env,
            text=True,
            capture_output=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def install(
        self,
        release: str,
        namespace: str,
        *values: str,
        sets: dict[str, str] | None = None,
        upgrade: bool = False,
        timeout: str = "300s",
    ) -> subprocess.CompletedProcess[str]:
        if not upgrade:
            self.recycle_volumes()
        args = ["upgrade", "--install"] if upgrade else ["install"]
        args += [
            release,
            str(CHART),
            "-n",
            namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            timeout,
            # The documented values for a cluster that cannot pull: the images `make images`
            # built (loaded into containerd by the session), then the e2e sizing.
            "-f",
            str(LOCAL_IMAGES),
            "-f",
            str(VALUES / "e2e.yaml"),
        ]
        for name in values:
            args += ["-f", str(VALUES / name) if not name.startswith("/") else name]
        # Extra values for every install (e.g. other images): LANGSCALE_E2E_VALUES=file,...
        for extra in filter(None, os.environ.get("LANGSCALE_E2E_VALUES", "").split(",")):
            args += ["-f", extra]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        return self.helm(*args)

    def uninstall(self, release: str, namespace: str) -> None:
        self.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "180s", check=False)
        # Not waited for: the namespace goes away in the background (its volume is recycled
        # by a later install once released; the cluster has enough of them).
        self.core.delete_namespace(namespace)

    def recycle_volumes(self) -> None:
        """Make the cluster's hostPath volumes that a deleted release released Available
        again, emptied (the local cluster has no provisioner: localcluster.py makes a few)."""
        import shutil

        for volume in self.core.list_persistent_volume().items:
            if volume.status.phase != "Released" or volume.spec.host_path is None:
                continue
            directory = Path(volume.spec.host_path.path)
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            self.core.patch_persistent_volume(volume.metadata.name, {"spec": {"claimRef": None}})

    def namespaces(self) -> list[str]:
        return [ns.metadata.name for ns in self.core.list_namespace().items]

    # ---- objects ----

    def pods(self, namespace: str, selector: str = "") -> list[k8s.V1Pod]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)

    @staticmethod
    def ready(pod: k8s.V1Pod) -> bool:
        conditions = pod.status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def all_pods_ready(self, namespace: str, selector: str = "") -> bool:
        pods = [p for p in self.pods(namespace, selector) if p.metadata.deletion_timestamp is None]
        return bool(pods) and all(self.ready(p) for p in pods)

    def ready_pods(self, namespace: str, selector: str) -> list[k8s.V1Pod]:
        return [
            p
            for p in self.pods(namespace, selector)
            if self.ready(p) and p.metadata.deletion_timestamp is None
        ]

    def deployment(self, namespace: str, name: str) -> k8s.V1Deployment:
        return self.apps.read_namespaced_deployment(name, namespace)

    def spec_replicas(self, namespace: str, name: str) -> int:
        return int(self.deployment(namespace, name).spec.replicas or 0)

    def service_url(self, namespace: str, name: str, port: int = 8000) -> str:
        """The Service's ClusterIP, reachable from this host through kube-proxy's rules."""
        service = self.core.read_namespaced_service(name, namespace)
        return f"http://{service.spec.cluster_ip}:{port}"

    def logs(self, namespace: str, selector: str) -> str:
        out = []
        for pod in self.pods(namespace, selector):
            for container in pod.spec.containers:
                try:
                    text = self.core.read_namespaced_pod_log(
                        pod.metadata.name, namespace, container=container.name, tail_lines=80
                    )
                except k8s.ApiException as error:
                    text = f"(no log: {error.reason})"
                out.append(f"--- {pod.metadata.name}/{container.name}\n{text}")
        return "\n".join(out)
