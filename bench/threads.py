"""What thread ordering adds to a run: latency per run with and without threads, same run.

``python -m bench.threads [--clients 20] [--seconds 30] [--rounds 6] [--latency 0.05]``

One gateway and one worker process, the ``chat`` pipeline on the fake model. ``--clients``
clients each invoke in a loop (``POST /chat/invoke``), measuring each run from request to
answer, in three modes that take turns in short rounds (so other load on this shared
machine falls on each alike):

- ``none``: no thread (the baseline);
- ``own thread``: each client's runs in its own thread (``config.configurable.session_id``):
  a thread is never busy when its next run arrives, so the difference from ``none`` is the
  cost of the ordering itself (the thread's list, its head, the release when a run ends);
- ``shared by 5``: five clients per thread: runs of a thread wait for each other (the
  ordering doing its job; latency grows with the runs ahead in the thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx

from bench.common import (
    cpu_seconds,
    langscale_gateway,
    langscale_worker,
    latency_summary,
    machine_info,
    md_table,
    wait_quiet,
    wait_until,
    write_results,
)
from bench.loadgen import invoke_clients
from langscale.localredis import free_port, start_local_redis

MODES = {"none": 0, "own thread": 1, "shared by 5": 5}


def drive(port: int, clients: int, seconds: float, per_thread: int, tag: str) -> dict[str, Any]:
    def body(n: int, i: int) -> dict[str, Any]:
        config = {"configurable": {"session_id": f"{tag}-{n // per_thread}"}} if per_thread else {}
        return {"input": {"question": f"q{n}-{i}"}, "config": config}

    return asyncio.run(invoke_clients(port, clients, seconds, "/chat/invoke", body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30, help="per mode, over the rounds")
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    redis = start_local_redis()
    settings = {"fake_latency": args.latency, "invoke_timeout": 120, "worker_concurrency": 200}
    worker = langscale_worker("threads-worker", redis.url, **settings, worker_http_port=0)
    port = free_port()
    gateway = langscale_gateway("threads-gateway", redis.url, port, **settings)
    procs = [worker.start(), gateway.start()]

    def ready() -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return r.status_code == 200 and r.json()["workers"] >= 1
        except httpx.HTTPError:
            return False

    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "modes": []}
    try:
        wait_until(ready, 90, 0.2, procs)
        drive(port, args.clients, 2, 0, "warmup")
        # Modes take turns in short rounds, so a burst of someone else's load on this
        # shared machine falls on all of them alike.
        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        totals = {
            mode: {"runs": 0, "errors": 0, "seconds": 0.0, "cpu": [0.0, 0.0]} for mode in MODES
        }
        busy = []
        for round_ in range(args.rounds):
            busy.append(wait_quiet(max_wait=5))
            for mode, per_thread in MODES.items():
                cpu = [cpu_seconds(p.pid) for p in procs]
                tag = f"{mode.replace(' ', '-')}-{round_}"
                started = time.monotonic()
                figures = drive(port, args.clients, args.seconds / args.rounds, per_thread, tag)
                total = totals[mode]
                total["seconds"] += time.monotonic() - started
                for i, p in enumerate(procs):
                    total["cpu"][i] += cpu_seconds(p.pid) - cpu[i]
                total["runs"] += figures["runs"]
                total["errors"] += figures["errors"]
                latencies[mode] += figures["latencies"]
        for mode in MODES:
            total = totals[mode]
            runs = max(1, total["runs"])
            figures = {
                "mode": mode,
                "runs": total["runs"],
                "errors": total["errors"],
                "runs_per_second": round(total["runs"] / total["seconds"], 1),
                "latency": latency_summary(latencies[mode]),
                "worker_cpu_ms_per_run": round(1000 * total["cpu"][0] / runs, 2),
                "gateway_cpu_ms_per_run": round(1000 * total["cpu"][1] / runs, 2),
                "busy_cpus_before_rounds": busy,
            }
            print(json.dumps(figures), flush=True)
            results["modes"].append(figures)
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()
    base = results["modes"][0]["latency"]
    rows = []
    for m in results["modes"]:
        lat = m["latency"]
        rows.append(
            [
                m["mode"],
                m["runs_per_second"],
                lat["p50_ms"],
                lat["p99_ms"],
                round((lat["p50_ms"] or 0) - (base["p50_ms"] or 0), 2),
                round((lat["p99_ms"] or 0) - (base["p99_ms"] or 0), 2),
                m["worker_cpu_ms_per_run"],
                m["gateway_cpu_ms_per_run"],
                m["errors"],
            ]
        )
    markdown = (
        f"# thread ordering: {args.clients} clients invoking in a loop, fake LLM "
        f"{args.latency:g} s, {args.seconds:g} s per mode in {args.rounds} interleaved rounds\n\n"
        + md_table(
            [
                "threads",
                "runs/s",
                "p50 ms",
                "p99 ms",
                "p50 added ms",
                "p99 added ms",
                "worker CPU ms/run",
                "gateway CPU ms/run",
                "errors",
            ],
            rows,
        )
    )
    print(markdown)
    write_results("threads", results, markdown)


if __name__ == "__main__":
    main()
