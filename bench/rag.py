"""Retrieval throughput: rag runs/s with pooled vector store connections vs one per run.

``python -m bench.rag [--concurrency 100] [--seconds 15] [--documents 2000]``

A real Chroma server (``chroma run``, from the ``chromadb`` package, on a free port) holds
``--documents`` chunks ingested with ``langscale ingest``; one gateway and one worker
process serve the ``rag`` pipeline with the fake model at zero latency, so the vector store
path (embedding through the batching, the query over HTTP) is what is measured. Each
configuration — ``LANGSCALE_VECTOR_STORE_POOL_SIZE`` 0 (a new connection per query), 5
and 20 — gets its own worker, one after the other in the same run, with ``--concurrency``
clients invoking in a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    LOG_DIR,
    Proc,
    cpu_seconds,
    langscale_env,
    langscale_gateway,
    langscale_worker,
    machine_info,
    md_table,
    wait_quiet,
    wait_until,
    write_results,
)
from bench.loadgen import invoke_clients
from langscale.localredis import free_port, start_local_redis

DIMENSIONS = 384  # of the fake embeddings: a common real embedding size


@dataclass
class ChromaServer:
    """A Chroma server on a free loopback port, its data in a private folder."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chroma-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ChromaServer:
        chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
        log = (LOG_DIR / f"chroma-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                chroma,
                "run",
                "--path",
                str(self.directory / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "ANONYMIZED_TELEMETRY": "False"},
        )

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"chroma exited: see {log.name}")
            try:
                return httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout, 0.1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def ingest(settings: dict[str, Any], documents: int, redis_url: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rag-docs-"))
    for i in range(documents):
        (folder / f"doc-{i:05d}.txt").write_text(f"Document {i}: facts about topic {i % 97}.")
    subprocess.run(
        [sys.executable, "-m", "langscale.cli", "ingest", str(folder)],
        env=langscale_env(redis_url, **settings),
        check=True,
        capture_output=True,
    )
    shutil.rmtree(folder)


def drive(port: int, concurrency: int, seconds: float) -> dict[str, Any]:
    def body(n: int, i: int) -> dict[str, Any]:
        return {"input": {"question": f"topic {(n * 31 + i) % 97}"}}

    figures = asyncio.run(invoke_clients(port, concurrency, seconds, "/rag/invoke", body))
    del figures["latencies"]
    return figures


def worker_metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--pools", default="0,5,20")
    args = parser.parse_args()

    redis = start_local_redis()
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "runs": []}
    with ChromaServer() as chroma:
        settings: dict[str, Any] = {
            "pipelines": "rag=langscale_worker.pipelines:rag",
            "fake_latency": 0,
            "fake_embedding_dimensions": DIMENSIONS,
            "vector_store_url": chroma.url,
            "invoke_timeout": 60,
            "worker_concurrency": args.concurrency,
        }
        ingest(settings, args.documents, redis.url)
        port = free_port()
        gateway = langscale_gateway("rag-gateway", redis.url, port, **settings).start()
        try:
            for pool in (int(p) for p in args.pools.split(",")):
                metrics_port = free_port()
                worker: Proc = langscale_worker(
                    f"rag-worker-{pool}",
                    redis.url,
                    **settings,
                    vector_store_pool_size=pool,
                    worker_http_port=metrics_port,
                ).start()

                def ready(w: Proc = worker) -> bool:
                    w.check()
                    try:
                        r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                        return r.status_code == 200 and r.json()["workers"] >= 1
                    except httpx.HTTPError:
                        return False

                wait_until(ready, 90, 0.2)
                busy_before = wait_quiet()  # the machine is shared
                cpu_before = cpu_seconds(worker.pid)
                chroma_before = cpu_seconds(chroma.process.pid) if chroma.process else 0.0
                figures = drive(port, args.concurrency, args.seconds)
                figures |= {
                    "pool_size": pool,
                    "busy_cpus_before": busy_before,
                    "worker_cpu_ms_per_run": round(
                        1000 * (cpu_seconds(worker.pid) - cpu_before) / max(1, figures["runs"]),
                        2,
                    ),
                    "chroma_cpu_ms_per_run": round(
                        1000
                        * (cpu_seconds(chroma.process.pid) - chroma_before if chroma.process else 0)
                        / max(1, figures["runs"]),
                        2,
                    ),
                    "connections_opened": worker_metric(
                        metrics_port, "langscale_vector_store_connections_opened_total"
                    ),
                }
                print(json.dumps(figures), flush=True)
                results["runs"].append(figures)
                worker.stop()
                # The next worker must not find this one's registration "live".
                time.sleep(0.5)
        finally:
            gateway.stop()
            redis.stop()
    rows = [
        [
            "new connection per run" if r["pool_size"] == 0 else f"pool of {r['pool_size']}",
            r["runs_per_second"],
            r["latency"]["p50_ms"],
            r["latency"]["p99_ms"],
            r["worker_cpu_ms_per_run"],
            r["chroma_cpu_ms_per_run"],
            int(r["connections_opened"]),
            r["errors"],
        ]
        for r in results["runs"]
    ]
    markdown = (
        f"# rag throughput: concurrency {args.concurrency}, {args.documents} documents, "
        f"{DIMENSIONS}-dim fake embeddings, fake LLM at 0 latency, {args.seconds:g} s each\n\n"
        + md_table(
            [
                "vector store connections",
                "runs/s",
                "p50 ms",
                "p99 ms",
                "worker CPU ms/run",
                "chroma CPU ms/run",
                "connections opened",
                "errors",
            ],
            rows,
        )
    )
    print(markdown)
    write_results("rag", results, markdown)


if __name__ == "__main__":
    main()
