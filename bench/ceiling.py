"""The throughput ceiling (issue 16): runs/s at LLM latency 0, by process count and Redis.

For each Redis (one ``redis-server``; a Redis Cluster of 3 masters and 3 replicas, with
``LANGSCALE_REDIS_PARTITIONS=12``) and each mix of 1, 2 or 4 ``langscale worker``
processes and 1 or 2 ``langscale gateway`` processes, a closed loop of K clients (spread
over the gateways) calls ``POST /chat/invoke`` (the built-in chat pipeline, fake model at
latency 0) for S seconds after a warm-up. Reported per mix:

- runs/s, end-to-end p50/p99;
- CPU of each component in the window (/proc: gateways, workers, Redis masters, replicas,
  and this load generator), as cores and as ms per run, and the machine's idle share:
  where all cores are busy, the machine, not langscale, is the limit;
- Redis commands per run: ``INFO commandstats`` deltas summed over the masters (commands
  that scripts call count too), by command;
- the extrapolation an SRE needs: runs/s per core of Redis, of workers, of gateways
  (1000 / CPU ms per run), from the mix with the most headroom.

The machine is shared: each mix waits (bounded) for a quiet machine, and reports the CPU
other processes used in its window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    RESULTS,
    CpuSampler,
    Proc,
    git_state,
    langscale_gateway,
    langscale_worker,
    latency_summary,
    machine_info,
    md_table,
    sync_redis,
    wait_quiet,
    wait_until,
    write_results,
)
from bench.loadgen import RawHTTP
from langscale.localredis import LocalCluster, free_port, start_local_redis

CLUSTER_PARTITIONS = 12


class Backend:
    """One Redis or a cluster: its URL, processes, and command counters."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "cluster":
            directory = Path(tempfile.mkdtemp(prefix="langscale-bench-cluster-"))
            self.cluster: LocalCluster | None = LocalCluster(directory).start()
            self.url = self.cluster.url
            self.partitions = CLUSTER_PARTITIONS
        else:
            self.cluster = None
            self.single = start_local_redis()
            self.url = self.single.url
            self.partitions = 1

    def nodes(self) -> list[tuple[str, int, int]]:
        """(role, port, pid) of every redis-server."""
        servers = self.cluster.nodes if self.cluster else [self.single]
        out = []
        for server in servers:
            assert server.process is not None
            with sync_redis(f"redis://127.0.0.1:{server.port}/0") as r:
                role = "master" if r.info("replication")["role"] == "master" else "replica"
            out.append((role, server.port, server.process.pid))
        return out

    def commandstats(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for role, port, _ in self.nodes():
            if role != "master":
                continue
            with sync_redis(f"redis://127.0.0.1:{port}/0") as r:
                for name, value in r.info("commandstats").items():
                    totals[name] = totals.get(name, 0) + int(value["calls"])
        return totals

    def flush(self) -> None:
        for role, port, _ in self.nodes():
            if role == "master":
                with sync_redis(f"redis://127.0.0.1:{port}/0") as r:
                    r.flushall()

    def stop(self) -> None:
        if self.cluster:
            self.cluster.stop()
        else:
            self.single.stop()


async def closed_loop(ports: list[int], clients: int, seconds: float) -> list[tuple[float, float]]:
    """K clients, each on one gateway (round robin), invoking until ``seconds`` pass.
    Returns (sent, received) of each successful run; an error stops the loop."""
    done: list[tuple[float, float]] = []
    end = time.time() + seconds
    body = json.dumps({"input": {"question": "q"}}).encode()

    async def client(port: int) -> None:
        raw = RawHTTP("127.0.0.1", port)
        try:
            while time.time() < end:
                sent = time.time()
                status, data = await raw.request("POST", "/chat/invoke", body)
                if status != 200:
                    raise RuntimeError(f"invoke answered {status}: {data[:200]!r}")
                done.append((sent, time.time()))
        finally:
            await raw.aclose()

    await asyncio.gather(*(client(ports[i % len(ports)]) for i in range(clients)))
    return done


def measure(
    backend: Backend, workers: int, gateways: int, clients: int, seconds: float
) -> dict[str, Any]:
    backend.flush()
    settings = {
        "fake_latency": 0,
        "worker_http_port": 0,
        "redis_partitions": backend.partitions,
        "invoke_timeout": 60,
        "admission_max_ready": 0,
    }
    procs: list[Proc] = []
    ports = [free_port() for _ in range(gateways)]
    try:
        for i in range(workers):
            procs.append(langscale_worker(f"ceiling-worker-{i}", backend.url, **settings).start())
        for i, port in enumerate(ports):
            procs.append(
                langscale_gateway(f"ceiling-gateway-{i}", backend.url, port, **settings).start()
            )

        def ready() -> bool:
            for port in ports:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                except httpx.HTTPError:
                    return False
                if r.status_code != 200 or r.json().get("workers", 0) < workers:
                    return False
            return True

        wait_until(ready, 120, 0.3, procs)
        asyncio.run(closed_loop(ports, clients, 2.0))  # warm-up: connections, scripts
        quiet = wait_quiet(max_wait=30)
        pids = {p.name.replace("ceiling-", ""): p.pid for p in procs}
        nodes = backend.nodes()
        for index, (role, _, pid) in enumerate(nodes):
            pids[f"redis-{role}-{index}"] = pid
        before = backend.commandstats()
        with CpuSampler(pids) as sampler:
            t0 = time.time()
            done = asyncio.run(closed_loop(ports, clients, seconds))
            t1 = time.time()
        after = backend.commandstats()
        for proc in procs:
            proc.check()
        runs = len(done)
        wall = t1 - t0

        def cores(prefix: str) -> float:
            return sum(sampler.between(k, t0, t1) for k in pids if k.startswith(prefix)) / wall

        cpu = {
            "gateways": cores("gateway"),
            "workers": cores("worker"),
            "redis_masters": cores("redis-master"),
            "redis_replicas": cores("redis-replica"),
            "load_generator": sampler.between("_bench", t0, t1) / wall,
        }
        busy = (sampler.between("_system", t0, t1)) / wall
        commands = {
            k.removeprefix("cmdstat_"): (after.get(k, 0) - before.get(k, 0)) / runs
            for k in after
            if after.get(k, 0) - before.get(k, 0) > 0
        }
        rate = runs / wall
        return {
            "redis": backend.kind,
            "workers": workers,
            "gateways": gateways,
            "clients": clients,
            "seconds": round(wall, 2),
            "runs": runs,
            "runs_per_s": round(rate, 1),
            "e2e": latency_summary([b - a for a, b in done]),
            "cpu_cores": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_ms_per_run": {k: round(1000 * v / rate, 3) for k, v in cpu.items()},
            "machine_busy_cores": round(busy, 2),
            "machine_cores": os.cpu_count(),
            "foreign_cpus": sampler.foreign(t0, t1),
            "machine_busy_cpus_before": quiet,
            "redis_commands_per_run": round(sum(commands.values()), 2),
            "redis_commands_by_name": {
                k: round(v, 2) for k, v in sorted(commands.items(), key=lambda kv: -kv[1])
            },
        }
    finally:
        for proc in reversed(procs):
            proc.stop()


def extrapolate(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """runs/s per core of each component, from each Redis's mix with the most runs/s."""
    out = []
    for kind in ("single", "cluster"):
        mine = [r for r in rows if r["redis"] == kind and "failed" not in r]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["runs_per_s"])
        ms = best["cpu_ms_per_run"]
        redis_ms = ms["redis_masters"]
        out.append(
            [
                "one Redis" if kind == "single" else "3-master cluster (masters' CPU summed)",
                f"{best['workers']}w × {best['gateways']}g",
                best["runs_per_s"],
                round(1000 / redis_ms, 0) if redis_ms else None,
                round(1000 / ms["workers"], 0) if ms["workers"] else None,
                round(1000 / ms["gateways"], 0) if ms["gateways"] else None,
                best["redis_commands_per_run"],
            ]
        )
    return out


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    text = (
        "# Throughput ceiling at latency 0 (issue 16)\n\n"
        f"Command: `{data['command']}`  \n{m['cpus']} CPUs, load at start "
        f"{m['loadavg_at_start']}, git {data['git']['head']}, {data['clients']} clients, "
        f"{data['seconds']:g} s per mix.\n\n"
    )
    rows = []
    for r in data["rows"]:
        if "failed" in r:
            rows.append([r["redis"], r["workers"], r["gateways"], "failed"] + [None] * 10)
            continue
        ms, cores = r["cpu_ms_per_run"], r["cpu_cores"]
        rows.append(
            [
                r["redis"],
                r["workers"],
                r["gateways"],
                r["runs_per_s"],
                r["e2e"]["p50_ms"],
                r["e2e"]["p99_ms"],
                f"{ms['gateways']:.2f} ({cores['gateways']:.2f})",
                f"{ms['workers']:.2f} ({cores['workers']:.2f})",
                f"{ms['redis_masters']:.3f} ({cores['redis_masters']:.2f})",
                f"{ms['redis_replicas']:.3f}",
                f"{cores['load_generator']:.2f}",
                f"{r['machine_busy_cores']:.2f} of {r['machine_cores']}",
                r["foreign_cpus"],
                r["redis_commands_per_run"],
            ]
        )
    text += md_table(
        [
            "Redis",
            "workers",
            "gateways",
            "runs/s",
            "p50 ms",
            "p99 ms",
            "gateway CPU ms/run (cores)",
            "worker CPU ms/run (cores)",
            "Redis masters ms/run (cores)",
            "replicas ms/run",
            "load gen cores",
            "machine busy",
            "other load",
            "Redis cmds/run",
        ],
        rows,
    )
    text += "\n## Per core (from each Redis's fastest mix)\n\n"
    text += md_table(
        [
            "Redis",
            "mix",
            "runs/s",
            "runs/s per Redis core",
            "runs/s per worker core",
            "runs/s per gateway core",
            "Redis cmds/run",
        ],
        extrapolate(data["rows"]),
    )
    first = next((r for r in data["rows"] if "failed" not in r), None)
    if first:
        text += (
            f"\n## Redis commands per run ({first['redis']}, {first['workers']} worker, "
            f"{first['gateways']} gateway)\n\n"
        )
        text += md_table(
            ["command", "per run"], [[k, v] for k, v in first["redis_commands_by_name"].items()]
        )
    text += (
        "\nCPU from /proc in the measured window. `machine busy` = all processes on the "
        "machine; when it is near the core count, the machine is the limit. Redis commands "
        "are INFO commandstats deltas over the masters, the commands scripts call included "
        "(EVALSHA counts once more). Per-core figures: 1000 / CPU ms per run of that "
        "component (a cluster's: its masters' CPU summed, so per master core; idle cluster "
        "nodes' own CPU, cluster bus and cron, counts in it).\n"
    )
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench ceiling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis", nargs="+", default=["single", "cluster"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--quick", action="store_true", help="4 s per mix")
    parser.add_argument("--name", default="ceiling", help="results file stem")
    args = parser.parse_args(argv)
    seconds = args.seconds or (4.0 if args.quick else 8.0)
    given = argv if argv is not None else sys.argv[1:]
    data: dict[str, Any] = {
        "command": "python -m bench ceiling " + " ".join(given),
        "machine": machine_info(),
        "git": git_state(),
        "clients": args.clients,
        "seconds": seconds,
        "rows": [],
    }
    for kind in args.redis:
        backend = Backend(kind)
        try:
            for gateways in args.gateways:
                for workers in args.workers:
                    print(f"[ceiling] {kind}: {workers} worker(s), {gateways} gateway(s)")
                    try:
                        row = measure(backend, workers, gateways, args.clients, seconds)
                    except Exception as exc:
                        print(f"  failed: {exc!r}", flush=True)
                        row = {
                            "redis": kind,
                            "workers": workers,
                            "gateways": gateways,
                            "failed": repr(exc)[:500],
                        }
                    else:
                        print(
                            f"  -> {row['runs_per_s']} runs/s, CPU ms/run "
                            f"{row['cpu_ms_per_run']}, {row['redis_commands_per_run']} "
                            f"Redis commands/run, other load {row['foreign_cpus']}",
                            flush=True,
                        )
                    data["rows"].append(row)
        finally:
            backend.stop()
    text = markdown(data)
    json_path, md_path = write_results(args.name, data, text)
    print(text)
    print(f"wrote {json_path} and {md_path}")
    if args.name == "ceiling" and (RESULTS / "memory.json").exists():
        from bench import capacity

        print(capacity.write())
    return data


if __name__ == "__main__":
    main()
