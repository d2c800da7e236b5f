"""A single-node Kubernetes for langscale's end-to-end tests, built from registry packages.

    python tests/e2e/cluster/localcluster.py build          # binaries and images, cached
    python tests/e2e/cluster/localcluster.py up [--keda]    # start; prints the kubeconfig
    python tests/e2e/cluster/localcluster.py down           # stop and remove everything

What runs (docs/e2e.md says why these versions):
- Kubernetes v1.35.4 (etcd 3.6.5, kube-apiserver, kube-controller-manager, kube-scheduler,
  kubelet, kube-proxy, kubectl) built from the Go module proxy (go/kubernetes/go.mod);
- Debian's containerd 1.6 and runc, and its CNI plugins (bridge, host-local, portmap,
  firewall); the kubelet on cgroup v1 with the cgroupfs driver and `failCgroupV1: false`;
- CoreDNS (go/coredns) and the pod sandbox (go/pause) as one-binary images made here;
- KEDA (go/keda) from its own manifests in the module, on demand;
- helm (go/helm) for the tests.

Build outputs live under `--cache` (the Makefile's `$(CACHE)/e2e`), keyed by the hash of
their go.mod/go.sum/sources and the Go version, so a fresh clone on this machine reuses them.
Everything the cluster writes (etcd data, certificates, containerd and kubelet state, logs)
lives under one run directory that `down` unmounts and removes, with the bridge, the
iptables chains and the cgroups the cluster made.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from images import Image, ImageFile, write_archive

HERE = Path(__file__).resolve().parent
GO = HERE / "go"
K8S_VERSION = "v1.35.4"
NODE_NAME = "langscale-e2e"
BRIDGE = "lse2e0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"  # the bridge's own address: the API server is not exposed on eth0
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
CGROUP_ROOT = "langscale-e2e"
EGRESS_CHAIN = "LSE2E-EGRESS"  # FORWARD: pods reach each other and this host, nothing else
PAUSE_IMAGE = "langscale.local/e2e/pause:1"
COREDNS_IMAGE = "langscale.local/e2e/coredns:1.14.5"
KEDA_VERSION = "v2.21.0"
KEDA_IMAGES = {
    "keda": "ghcr.io/kedacore/keda:main",
    "keda-adapter": "ghcr.io/kedacore/keda-metrics-apiserver:main",
}
# Debian packages the cluster runs, and a file each one installs.
DEBIAN_PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "conntrack": "/usr/sbin/conntrack",
    "iptables": "/usr/sbin/iptables",
    "openssl": "/usr/bin/openssl",
}
CNI_BIN_DIR = "/usr/lib/cni"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} e2e: {message}", file=sys.stderr, flush=True)


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    """Poll `check` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception as error:  # a component that is still starting answers with errors
            last = repr(error)
        else:
            last = "not yet"
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s ({last})")
        time.sleep(every)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


# --------------------------------------------------------------------------------------------
# Build: Go binaries from the module proxy, one-binary images, Debian packages.
# --------------------------------------------------------------------------------------------


def _version_ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={K8S_VERSION}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=2026-01-01T00:00:00Z",
        ]
    return " ".join(flags)


@dataclass(frozen=True)
class Module:
    """A Go module under go/ and the binaries it builds."""

    name: str
    packages: str = "tool"  # go build pattern: the module's `tool` lines, or "."
    ldflags: str = "-s -w"
    rename: dict[str, str] = field(default_factory=dict)


MODULES = [
    Module("kubernetes", ldflags=_version_ldflags(), rename={"server": "etcd"}),
    Module("helm"),
    Module("coredns", packages="."),
    Module("pause", packages="."),
    Module("keda", rename={"operator": "keda", "adapter": "keda-adapter"}),
]


def go_version() -> str:
    return run(["go", "env", "GOVERSION"]).stdout.strip()


def module_key(module: Module) -> str:
    digest = hashlib.sha256()
    digest.update(f"{go_version()}\n{module.ldflags}\n{module.packages}\n".encode())
    for path in sorted((GO / module.name).iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_module(cache: Path, module: Module) -> Path:
    """go build the module's binaries into cache/bin/<name>-<key>/ unless already there."""
    out = cache / "bin" / f"{module.name}-{module_key(module)}"
    if (out / ".complete").exists():
        return out
    log(f"building {module.name} (go build, cached in {out})")
    started = time.monotonic()
    tmp = Path(
        tempfile.mkdtemp(
            prefix=f".{module.name}-",
            dir=out.parent.mkdir(parents=True, exist_ok=True) or out.parent,
        )
    )
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    subprocess.run(
        [
            "nice",
            "-n",
            "10",
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            module.ldflags,
            "-o",
            f"{tmp}/",
            module.packages,
        ],
        cwd=GO / module.name,
        env=env,
        check=True,
    )
    for old, new in module.rename.items():
        (tmp / old).rename(tmp / new)
    (tmp / ".complete").write_text(f"{time.monotonic() - started:.0f}s\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"built {module.name} in {time.monotonic() - started:.0f}s")
    return out


def ensure_debian_packages() -> None:
    missing = [name for name, path in DEBIAN_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"e2e: install Debian packages first: apt-get install {' '.join(missing)}")
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


@dataclass
class Build:
    bin: dict[str, Path]  # binary name -> path
    images: dict[str, Path]  # image reference -> docker-archive tar
    keda_module_dir: Path | None


def build(cache: Path, keda: bool = True) -> Build:
    """Build what the cluster runs (cached); KEDA, the longest build, only when `keda`."""
    ensure_debian_packages()
    binaries: dict[str, Path] = {}
    for module in MODULES:
        if module.name == "keda" and not keda:
            continue
        out = build_module(cache, module)
        for path in out.iterdir():
            if path.is_file() and not path.name.startswith("."):
                binaries[path.name] = path
    images_dir = cache / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    certs = Path("/etc/ssl/certs/ca-certificates.crt")
    wanted = {
        PAUSE_IMAGE: Image(PAUSE_IMAGE, [ImageFile("/pause", binaries["pause"])], ["/pause"]),
        COREDNS_IMAGE: Image(
            COREDNS_IMAGE, [ImageFile("/coredns", binaries["coredns"])], ["/coredns"]
        ),
        **{
            ref: Image(
                ref,
                [
                    ImageFile(f"/{name}", binaries[name]),
                    ImageFile("/etc/ssl/certs/ca-certificates.crt", certs, mode=0o644),
                ],
                [f"/{name}"],
            )
            for name, ref in KEDA_IMAGES.items()
            if keda
        },
    }
    images: dict[str, Path] = {}
    for ref, image in wanted.items():
        source_key = hashlib.sha256(
            b"".join(f.source.read_bytes() for f in image.files if f.source) + ref.encode()
        ).hexdigest()[:16]
        tar = images_dir / f"{ref.replace('/', '_').replace(':', '_')}-{source_key}.tar"
        if not tar.exists():
            write_archive(image, tar)
        images[ref] = tar
    keda_dir = None
    if keda:
        keda_dir = Path(
            run(
                ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/kedacore/keda/v2"],
                cwd=GO / "keda",
            ).stdout.strip()
        )
    return Build(bin=binaries, images=images, keda_module_dir=keda_dir)


# --------------------------------------------------------------------------------------------
# Certificates (openssl) and kubeconfigs
# --------------------------------------------------------------------------------------------


class PKI:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, kind: str) -> Path:
        return self.dir / f"{name}.{kind}"

    def ca(self, name: str, common_name: str) -> None:
        run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(self.path(name, "key")),
                "-out",
                str(self.path(name, "crt")),
                "-subj",
                f"/CN={common_name}",
                "-days",
                "7",
            ]
        )

    def cert(
        self,
        name: str,
        ca: str,
        common_name: str,
        orgs: tuple[str, ...] = (),
        sans: tuple[str, ...] = (),
    ) -> None:
        subject = "".join(f"/O={org}" for org in orgs) + f"/CN={common_name}"
        csr = self.path(name, "csr")
        run(
            [
                "openssl",
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(self.path(name, "key")),
                "-out",
                str(csr),
                "-subj",
                subject,
            ]
        )
        extensions = [
            "basicConstraints=CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth,clientAuth",
        ]
        if sans:
            extensions.append("subjectAltName=" + ",".join(sans))
        ext = self.path(name, "ext")
        ext.write_text("\n".join(extensions) + "\n")
        run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(self.path(ca, "crt")),
                "-CAkey",
                str(self.path(ca, "key")),
                "-CAcreateserial",
                "-days",
                "7",
                "-extfile",
                str(ext),
                "-out",
                str(self.path(name, "crt")),
            ]
        )

    def service_account_keys(self) -> None:
        run(
            [
                "openssl",
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                str(self.path("sa", "key")),
            ]
        )
        run(
            [
                "openssl",
                "ec",
                "-in",
                str(self.path("sa", "key")),
                "-pubout",
                "-out",
                str(self.path("sa", "pub")),
            ]
        )


def write_kubeconfig(path: Path, server: str, pki: PKI, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "langscale-e2e",
                "cluster": {
                    "server": server,
                    "certificate-authority": str(pki.path("ca", "crt")),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki.path(user, "crt")),
                    "client-key": str(pki.path(user, "key")),
                },
            }
        ],
        "contexts": [
            {"name": "langscale-e2e", "context": {"cluster": "langscale-e2e", "user": user}}
        ],
        "current-context": "langscale-e2e",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------

COREDNS_MANIFEST = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            ttl 5
        }
        cache 5
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "0"}]
      containers:
        - name: coredns
          image: COREDNS_IMAGE
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
          livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
          resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 128Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: config, mountPath: /etc/coredns}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Delete
"""

PERSISTENT_VOLUME = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: NAME}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  hostPath: {path: PATH, type: Directory}
"""


@dataclass
class State:
    """What `down` needs, kept in the run directory's state.json."""

    run_dir: str
    pids: dict[str, int] = field(default_factory=dict)
    api_port: int = 0
    containerd_socket: str = ""
    kube_proxy_config: str = ""
    bin: dict[str, str] = field(default_factory=dict)

    def save(self) -> None:
        Path(self.run_dir, "state.json").write_text(json.dumps(self.__dict__, indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> State:
        return cls(**json.loads((run_dir / "state.json").read_text()))


class Cluster:
    def __init__(self, cache: Path, artifacts: Build, run_dir: Path | None = None) -> None:
        self.cache = cache
        self.build = artifacts
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="lse2e-", dir="/tmp"))
        self.state = State(
            run_dir=str(self.run_dir), bin={k: str(v) for k, v in artifacts.bin.items()}
        )
        self.logs = self.run_dir / "logs"
        self.pki = PKI(self.run_dir / "pki")
        self.kubeconfig = self.run_dir / "kubeconfig"
        self.timings: dict[str, float] = {}
        self.imported: set[str] = set()

    # ---- helpers ----

    def bin(self, name: str) -> str:
        return str(self.build.bin[name])

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.state.pids[name] = process.pid
        self.state.save()

    def alive(self, name: str) -> bool:
        pid = self.state.pids.get(name)
        if pid is None:
            return False
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return False
        return Path(f"/proc/{pid}").exists()

    def expect_alive(self, name: str) -> None:
        if not self.alive(name):
            tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited; the end of its log:\n{tail}")

    def https_ok(self, url: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.path("ca", "crt")))
        context.load_cert_chain(
            str(self.pki.path("admin", "crt")), str(self.pki.path("admin", "key"))
        )
        with urllib.request.urlopen(url, context=context, timeout=3) as response:
            return bool(response.status == 200)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [self.bin("kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            text=True,
            capture_output=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def timed(self, what: str, started: float) -> None:
        self.timings[what] = round(time.monotonic() - started, 1)
        log(f"{what}: {self.timings[what]}s")

    # ---- start ----

    def up(self, keda: bool = False) -> None:
        started = time.monotonic()
        log(f"run directory {self.run_dir}")
        (self.cache / "current-run").write_text(str(self.run_dir))
        self.state.save()
        self.host_network()
        self.certificates()
        self.control_plane()
        self.node()
        self.cluster_addons()
        if keda:
            self.install_keda()
        self.timed("cluster up", started)

    def host_network(self) -> None:
        for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
            Path("/proc/sys", key).write_text("1")
        if run(["ip", "-o", "link", "show"]).stdout.find(f" {BRIDGE}:") >= 0:
            raise RuntimeError(f"bridge {BRIDGE} exists: a cluster is running, or run `down` first")
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        # Nothing of the cluster's may leave this machine. Service IPs are routed onto the
        # bridge, so a connection to a Service that no longer exists (no kube-proxy rule left
        # to translate it) stays here and times out instead of following the default route
        # out of the VM; pods may reach each other and this host, nothing else.
        run(["ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE])
        # In the mangle table: it runs before every filter rule (the CNI firewall plugin and
        # kube-proxy put their ACCEPTs first in filter's FORWARD).
        mangle = ["iptables", "-t", "mangle"]
        run([*mangle, "-N", EGRESS_CHAIN])
        run([*mangle, "-A", EGRESS_CHAIN, "-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"])
        run([*mangle, "-A", EGRESS_CHAIN, "-i", BRIDGE, "-j", "DROP"])
        run([*mangle, "-I", "FORWARD", "1", "-j", EGRESS_CHAIN])
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if hierarchy.name != "unified" and (hierarchy / "cgroup.procs").exists():
                (hierarchy / CGROUP_ROOT).mkdir(exist_ok=True)

    def certificates(self) -> None:
        started = time.monotonic()
        pki = self.pki
        pki.ca("ca", "langscale-e2e-ca")
        pki.ca("front-proxy-ca", "langscale-e2e-front-proxy-ca")
        pki.cert(
            "apiserver",
            "ca",
            "kube-apiserver",
            sans=(
                f"IP:{NODE_IP}",
                f"IP:{KUBERNETES_SERVICE_IP}",
                "IP:127.0.0.1",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ),
        )
        pki.cert("admin", "ca", "langscale-e2e-admin", orgs=("system:masters",))
        pki.cert(
            "apiserver-kubelet-client",
            "ca",
            "kube-apiserver-kubelet-client",
            orgs=("system:masters",),
        )
        pki.cert("controller-manager", "ca", "system:kube-controller-manager")
        pki.cert("scheduler", "ca", "system:kube-scheduler")
        pki.cert("kube-proxy", "ca", "system:kube-proxy")
        pki.cert(
            "kubelet",
            "ca",
            f"system:node:{NODE_NAME}",
            orgs=("system:nodes",),
            sans=(f"IP:{NODE_IP}", f"DNS:{NODE_NAME}"),
        )
        pki.cert("front-proxy-client", "front-proxy-ca", "front-proxy-client")
        pki.service_account_keys()
        self.timed("certificates", started)

    def control_plane(self) -> None:
        started = time.monotonic()
        run_dir, pki = self.run_dir, self.pki
        etcd_port, etcd_peer = free_port(), free_port()
        self.start(
            "etcd",
            [
                self.bin("etcd"),
                "--name",
                "e2e",
                "--data-dir",
                str(run_dir / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"e2e=http://127.0.0.1:{etcd_peer}",
                "--listen-metrics-urls",
                "",
                "--log-level",
                "warn",
                "--quota-backend-bytes",
                str(2 * 1024**3),
                "--unsafe-no-fsync",
            ],
        )

        def etcd_healthy() -> bool:
            self.expect_alive("etcd")
            with urllib.request.urlopen(f"http://127.0.0.1:{etcd_port}/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"

        wait_until(etcd_healthy, 60, "etcd")
        self.timed("etcd", started)

        api_port = free_port()
        self.state.api_port = api_port
        server = f"https://{NODE_IP}:{api_port}"
        self.start(
            "kube-apiserver",
            [
                self.bin("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--bind-address={NODE_IP}",
                f"--advertise-address={NODE_IP}",
                f"--secure-port={api_port}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={pki.path('ca', 'crt')}",
                f"--tls-cert-file={pki.path('apiserver', 'crt')}",
                f"--tls-private-key-file={pki.path('apiserver', 'key')}",
                f"--kubelet-client-certificate={pki.path('apiserver-kubelet-client', 'crt')}",
                f"--kubelet-client-key={pki.path('apiserver-kubelet-client', 'key')}",
                "--kubelet-preferred-address-types=InternalIP",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.path('sa', 'pub')}",
                f"--service-account-signing-key-file={pki.path('sa', 'key')}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--requestheader-client-ca-file={pki.path('front-proxy-ca', 'crt')}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.path('front-proxy-client', 'crt')}",
                f"--proxy-client-key-file={pki.path('front-proxy-client', 'key')}",
                "--enable-aggregator-routing=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        write_kubeconfig(self.kubeconfig, server, pki, "admin")
        for component in ("controller-manager", "scheduler", "kube-proxy", "kubelet"):
            write_kubeconfig(run_dir / f"{component}.kubeconfig", server, pki, component)

        def api_ready() -> bool:
            self.expect_alive("kube-apiserver")
            return self.https_ok(f"{server}/readyz")

        wait_until(api_ready, 120, "kube-apiserver")
        self.timed("kube-apiserver", started)

        self.start(
            "kube-controller-manager",
            [
                self.bin("kube-controller-manager"),
                f"--kubeconfig={run_dir / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={run_dir / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={run_dir / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={pki.path('sa', 'key')}",
                f"--root-ca-file={pki.path('ca', 'crt')}",
                f"--cluster-signing-cert-file={pki.path('ca', 'crt')}",
                f"--cluster-signing-key-file={pki.path('ca', 'key')}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--controllers=*,-nodeipam",
                "--node-monitor-grace-period=20s",
                "--horizontal-pod-autoscaler-sync-period=15s",
                "--v=1",
            ],
        )
        self.start(
            "kube-scheduler",
            [
                self.bin("kube-scheduler"),
                f"--kubeconfig={run_dir / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={run_dir / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={run_dir / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--v=1",
            ],
        )

    def node(self) -> None:
        started = time.monotonic()
        run_dir, pki = self.run_dir, self.pki
        containerd_dir = run_dir / "containerd"
        socket = containerd_dir / "containerd.sock"
        cni_conf = run_dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True)
        (run_dir / "cni" / "ipam").mkdir()
        containerd_dir.mkdir()
        (containerd_dir / "config.toml").write_text(f"""
version = 2
root = "{containerd_dir}/root"
state = "{containerd_dir}/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{containerd_dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This VM refuses a negative oom_score_adj even to root; containerd gives the pause
  # container -998 unless told to keep every score at or above its own (0 here).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
""")
        (cni_conf / "10-langscale-e2e.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "langscale-e2e",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,  # pods talk to nothing outside
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(run_dir / "cni" / "ipam"),
                                "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                        {"type": "firewall", "backend": "iptables"},
                    ],
                },
                indent=2,
            )
        )
        self.state.containerd_socket = str(socket)
        self.start("containerd", ["containerd", "--config", str(containerd_dir / "config.toml")])
        wait_until(
            lambda: socket.is_socket() or self.expect_alive("containerd") or False, 30, "containerd"
        )
        self.timed("containerd", started)
        for ref, tar in self.build.images.items():
            self.import_image(tar, ref)
            self.imported.add(ref)
        self.timed("images imported", started)

        kubelet_dir = run_dir / "kubelet"
        kubelet_dir.mkdir()
        kubelet_port, healthz_port = free_port(), free_port()
        (run_dir / "kubelet.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    # cgroup v1 (this VM): Kubernetes 1.35 refuses it unless told otherwise.
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{CGROUP_ROOT}",
                    "containerRuntimeEndpoint": f"unix://{socket}",
                    "address": NODE_IP,
                    "port": kubelet_port,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": healthz_port,
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(pki.path("ca", "crt"))},
                    },
                    "authorization": {"mode": "Webhook"},
                    "tlsCertFile": str(pki.path("kubelet", "crt")),
                    "tlsPrivateKeyFile": str(pki.path("kubelet", "key")),
                    "clusterDNS": [DNS_IP],
                    "clusterDomain": "cluster.local",
                    "failSwapOn": False,
                    "staticPodPath": "",
                    "podLogsDir": str(run_dir / "pod-logs"),
                    "volumePluginDir": str(kubelet_dir / "volume-plugins"),
                    "serializeImagePulls": False,
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                    },
                    "maxPods": 110,
                    "shutdownGracePeriod": "0s",
                    "localStorageCapacityIsolation": True,
                },
                indent=2,
            )
        )
        self.start(
            "kubelet",
            [
                self.bin("kubelet"),
                f"--config={run_dir / 'kubelet.yaml'}",
                f"--kubeconfig={run_dir / 'kubelet.kubeconfig'}",
                f"--root-dir={kubelet_dir}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--cert-dir={run_dir / 'kubelet-pki'}",
                "--v=1",
            ],
            env={"PATH": f"{CNI_BIN_DIR}:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        proxy_config = run_dir / "kube-proxy.yaml"
        proxy_config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(run_dir / "kube-proxy.kubeconfig")},
                    "mode": "iptables",
                    "clusterCIDR": POD_CIDR,
                    "hostnameOverride": NODE_NAME,
                    "bindAddress": NODE_IP,
                    "healthzBindAddress": f"127.0.0.1:{free_port()}",
                    "metricsBindAddress": f"127.0.0.1:{free_port()}",
                    # Leave the machine's conntrack and localnet settings as they are.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    "iptables": {"localhostNodePorts": False},
                    "nodePortAddresses": [f"{NODE_IP}/32"],
                },
                indent=2,
            )
        )
        self.state.kube_proxy_config = str(proxy_config)
        self.start("kube-proxy", [self.bin("kube-proxy"), f"--config={proxy_config}", "--v=1"])
        self.state.save()

        def node_ready() -> bool:
            for name in ("kubelet", "kube-proxy", "containerd"):
                self.expect_alive(name)
            out = self.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            )
            return out.strip() == "True"

        wait_until(node_ready, 120, f"node {NODE_NAME} Ready")
        self.timed("node Ready", started)

    def import_image(self, tar: Path, ref: str = "") -> None:
        subprocess.run(
            [
                "ctr",
                "--address",
                self.state.containerd_socket,
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack",
                str(tar),
            ],
            check=True,
            capture_output=True,
        )
        log(f"imported {ref or tar.name}")

    def image_refs(self) -> set[str]:
        """The image references containerd holds for the cluster."""
        out = run(
            ["ctr", "--address", self.state.containerd_socket, "-n", "k8s.io", "images", "ls", "-q"]
        )
        return set(out.stdout.split())

    def import_docker_images(self, refs: list[str]) -> None:
        """`docker save | ctr import` of images the Docker engine holds (make images)."""
        saver = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE)
        subprocess.run(
            [
                "ctr",
                "--address",
                self.state.containerd_socket,
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack",  # containerd unpacks a layer when a container first needs it
                "-",
            ],
            stdin=saver.stdout,
            check=True,
            capture_output=True,
        )
        if saver.wait() != 0:
            raise RuntimeError(f"docker save {' '.join(refs)} failed")
        log(f"imported {', '.join(refs)}")

    def cluster_addons(self) -> None:
        started = time.monotonic()
        manifest = COREDNS_MANIFEST.replace("COREDNS_IMAGE", COREDNS_IMAGE).replace(
            "DNS_IP", DNS_IP
        )
        volumes = []
        for index in range(12):
            path = self.run_dir / "volumes" / f"pv{index}"
            path.mkdir(parents=True)
            path.chmod(0o777)
            volumes.append(
                PERSISTENT_VOLUME.replace("NAME", f"e2e-pv{index}").replace("PATH", str(path))
            )
        self.kubectl("apply", "-f", "-", input=manifest + "---" + "---".join(volumes))

        def dns_ready() -> bool:
            out = self.kubectl(
                "get",
                "deploy",
                "-n",
                "kube-system",
                "coredns",
                "-o",
                "jsonpath={.status.readyReplicas}",
            )
            return out.strip() == "1"

        wait_until(dns_ready, 120, "CoreDNS")
        self.timed("CoreDNS Ready", started)

    def install_keda(self) -> None:
        """KEDA's operator and metrics API server from its own manifests (config/ in the Go
        module), with the images built here; its admission webhooks are left out."""
        started = time.monotonic()
        import yaml

        if self.build.keda_module_dir is None:
            self.build = build(self.cache, keda=True)
        assert self.build.keda_module_dir is not None
        for ref, tar in self.build.images.items():
            if ref not in self.imported:
                self.import_image(tar, ref)
                self.imported.add(ref)
        rendered = self.kubectl("kustomize", str(self.build.keda_module_dir / "config" / "default"))
        documents = []
        for document in yaml.safe_load_all(rendered):
            if not document:
                continue
            name = document["metadata"]["name"]
            if "admission" in name or document["kind"] == "ValidatingWebhookConfiguration":
                continue
            if document["kind"] == "Deployment":
                for container in document["spec"]["template"]["spec"]["containers"]:
                    container["imagePullPolicy"] = "Never"
            documents.append(document)
        self.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(documents))

        def keda_ready() -> bool:
            out = self.kubectl(
                "get",
                "deploy",
                "-n",
                "keda",
                "-o",
                "jsonpath={range .items[*]}{.status.readyReplicas}{' '}{end}",
            )
            counts = out.split()
            return len(counts) == 2 and all(count == "1" for count in counts)

        wait_until(keda_ready, 240, "KEDA operator and metrics API server")

        def external_metrics_served() -> bool:
            out = self.kubectl(
                "get",
                "apiservice",
                "v1beta1.external.metrics.k8s.io",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Available')].status}",
            )
            return out.strip() == "True"

        wait_until(external_metrics_served, 120, "KEDA's external.metrics.k8s.io APIService")
        self.timed("KEDA Ready", started)

    # ---- stop ----

    @staticmethod
    def down(run_dir: Path) -> None:
        teardown(run_dir)


def _kill(pid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _stop(pid: int, timeout: float) -> None:
    _kill(pid)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        _kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _bridge_ports() -> list[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show", "master", BRIDGE], text=True, capture_output=True
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def teardown(run_dir: Path) -> None:
    """Stop the cluster of `run_dir` and remove what it made. Safe to call twice."""
    started = time.monotonic()
    if not (run_dir / "state.json").exists():
        log(f"{run_dir}: no cluster state; removing what is left")
        state = State(run_dir=str(run_dir))
    else:
        state = State.load(run_dir)
    alive = {name: pid for name, pid in state.pids.items() if Path(f"/proc/{pid}").exists()}
    kubectl = [
        state.bin.get("kubectl", "kubectl"),
        "--kubeconfig",
        str(run_dir / "kubeconfig"),
        "--request-timeout=10s",
    ]
    # 1. No new pods: stop the controllers, then delete every pod so that the kubelet stops
    #    each sandbox (CNI DEL releases its veth, IP and firewall rules).
    for name in ("kube-controller-manager", "kube-scheduler"):
        if name in alive:
            _stop(alive.pop(name), 10)
    if {"kube-apiserver", "kubelet", "containerd"} <= alive.keys():
        subprocess.run(
            [
                *kubectl,
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ],
            capture_output=True,
        )
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not _bridge_ports(), 90, "pod sandboxes gone", every=1)
    for name in ("kubelet", "kube-proxy"):
        if name in alive:
            _stop(alive.pop(name), 15)
    if state.kube_proxy_config and "kube-proxy" in state.bin:
        subprocess.run(
            [state.bin["kube-proxy"], "--cleanup", f"--config={state.kube_proxy_config}"],
            capture_output=True,
        )
    # 2. Containers that are left (if the kubelet could not stop them), then containerd and
    #    the shims it started for this socket.
    socket = state.containerd_socket
    if socket and "containerd" in alive:
        ctr = ["ctr", "--address", socket, "-n", "k8s.io"]
        tasks = subprocess.run(
            [*ctr, "tasks", "ls", "-q"], text=True, capture_output=True
        ).stdout.split()
        for task in tasks:
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True)
        for task in tasks:
            subprocess.run([*ctr, "tasks", "delete", "-f", task], capture_output=True)
    if "containerd" in alive:
        _stop(alive.pop("containerd"), 15)
    if socket:
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                    if (
                        cmdline
                        and cmdline[0].endswith(b"containerd-shim-runc-v2")
                        and socket.encode() in cmdline
                    ):
                        _kill(int(proc.name), signal.SIGKILL)
    for _name, pid in sorted(alive.items(), key=lambda item: item[0] != "kube-apiserver"):
        _stop(pid, 15)
    # 3. Mounts under the run directory (overlay rootfs, shm, volumes, netns), deepest first;
    #    then the network namespaces the sandboxes left, the bridge, iptables, cgroups.
    prefix = str(run_dir)
    for _ in range(3):
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        ours = sorted(
            (m for m in mounts if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True
        )
        if not ours:
            break
        for mount in ours:
            if subprocess.run(["umount", mount], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mount], capture_output=True)
    for port in _bridge_ports():
        subprocess.run(["ip", "link", "delete", port], capture_output=True)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)  # and its routes
    for cidr in (SERVICE_CIDR, POD_CIDR):
        for direction in ("-d", "-s"):
            subprocess.run(["conntrack", "-D", direction, cidr], capture_output=True)
    remove_iptables_chains()
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        root = hierarchy / CGROUP_ROOT
        if root.is_dir():
            for directory in sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()
    shutil.rmtree(run_dir, ignore_errors=True)
    log(f"cluster down in {time.monotonic() - started:.1f}s ({run_dir} removed)")


# Chains the kubelet, kube-proxy, the CNI plugins and host_network() create; nothing else
# here uses them.
OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-", "LSE2E-")


def remove_iptables_chains() -> None:
    for table in ("filter", "nat", "mangle"):
        listing = subprocess.run(
            ["iptables", "-t", table, "-S"], text=True, capture_output=True
        ).stdout
        rules = listing.splitlines()
        ours = {
            line.split()[1]
            for line in rules
            if line.startswith("-N ") and line.split()[1].startswith(OUR_CHAIN_PREFIXES)
        }
        if not ours:
            continue
        for line in rules:
            parts = shlex.split(line)
            if parts[0] == "-A" and parts[1] not in ours and ("-j" in parts or "-g" in parts):
                target = parts[parts.index("-j" if "-j" in parts else "-g") + 1]
                if target in ours:
                    subprocess.run(["iptables", "-t", table, "-D", *parts[1:]], capture_output=True)
        for chain in ours:
            subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
        for chain in ours:
            subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


@contextlib.contextmanager
def running_cluster(cache: Path, keda: bool = False) -> Iterator[Cluster]:
    """Build (cached), start, yield, and always tear down."""
    artifacts = build(cache, keda=keda)
    cluster = Cluster(cache, artifacts)
    try:
        cluster.up(keda=keda)
        yield cluster
    finally:
        teardown(cluster.run_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "langscale" / "e2e")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the binaries and images (cached)")
    up = sub.add_parser("up", help="start a cluster and leave it running")
    up.add_argument("--keda", action="store_true", help="also install KEDA")
    up.add_argument("--image", action="append", default=[], help="a Docker image to load (repeat)")
    down = sub.add_parser("down", help="stop the running cluster and remove its run directory")
    down.add_argument("run_dir", nargs="?", type=Path)
    args = parser.parse_args(argv)
    cache: Path = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    if args.command == "build":
        started = time.monotonic()
        artifacts = build(cache)
        log(f"build done in {time.monotonic() - started:.0f}s: {', '.join(sorted(artifacts.bin))}")
        return 0
    if args.command == "up":
        cluster = Cluster(cache, build(cache, keda=args.keda))
        try:
            cluster.up(keda=args.keda)
            if args.image:
                cluster.import_docker_images(args.image)
        except BaseException:
            teardown(cluster.run_dir)
            raise
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        return 0
    run_dir = args.run_dir
    if run_dir is None:
        pointer = cache / "current-run"
        if not pointer.exists():
            log("no running cluster")
            return 0
        run_dir = Path(pointer.read_text().strip())
    teardown(run_dir)
    (cache / "current-run").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
