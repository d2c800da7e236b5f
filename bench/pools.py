"""Claim cost with many pipelines: 20 pipelines served by one pool vs split in 4 pools.

A worker's claim looks at the queue of every pipeline it serves (``claim.lua``), so a
worker serving 20 pipelines pays for 20 queues per claim, one of a pool of 5 for 5. Both
layouts run the same fleet (4 worker processes, the same total concurrency) on the same
backlog (runs spread evenly over the 20 pipelines, zero LLM latency), in the same run:
the figure is how fast the fleet drains the backlog (runs/s) and Redis CPU per run.

    python -m bench.pools [--runs 4000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.common import (
    cpu_seconds,
    enqueue_runs,
    langscale_worker,
    machine_info,
    md_table,
    run_store,
    wait_quiet,
    write_results,
)
from langscale.localredis import start_local_redis

PIPELINES = [f"p{i:02d}" for i in range(20)]
TARGET = "langscale_worker.pipelines:chat"


def layouts() -> dict[str, list[list[str]]]:
    return {
        "one pool (4 workers x 20 pipelines)": [PIPELINES] * 4,
        "4 pools (4 workers x 5 pipelines)": [PIPELINES[i::4] for i in range(4)],
    }


async def drain(layout: list[list[str]], runs: int, concurrency: int) -> dict[str, Any]:
    redis_server = start_local_redis()
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_server.url)
    store = run_store(redis, redis_server.url)
    workers = [
        langscale_worker(
            f"pools-{n}",
            redis_server.url,
            pipelines=",".join(f"{p}={TARGET}" for p in served),
            worker_pool=f"pool{n}" if len(served) < len(PIPELINES) else "default",
            worker_concurrency=concurrency,
            fake_latency=0,
            worker_http_port=0,
            admission_max_ready=0,
        ).start()
        for n, served in enumerate(layout)
    ]
    try:
        deadline = time.monotonic() + 90
        while (await store.catalog()).live_workers < len(workers):
            for worker in workers:
                worker.check()
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not register")
            await asyncio.sleep(0.2)
        wait_quiet(max_wait=10)
        assert redis_server.process is not None
        redis_pid = redis_server.process.pid
        redis_cpu0 = cpu_seconds(redis_pid, tree=False)
        worker_cpu0 = sum(cpu_seconds(w.pid) for w in workers)
        started = time.monotonic()
        per = runs // len(PIPELINES)
        await asyncio.gather(
            *(enqueue_runs(store, p, [{"question": "x"}] * per) for p in PIPELINES)
        )
        while True:
            stats = await store.pipeline_stats(PIPELINES)
            if sum(s.ready + s.in_progress + s.suspects for s in stats) == 0:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        done = per * len(PIPELINES)
        redis_cpu = cpu_seconds(redis_pid, tree=False) - redis_cpu0
        worker_cpu = sum(cpu_seconds(w.pid) for w in workers) - worker_cpu0
        return {
            "runs": done,
            "seconds": round(elapsed, 2),
            "runs_per_second": round(done / elapsed, 1),
            "redis_cpu_ms_per_run": round(1000 * redis_cpu / done, 3),
            "worker_cpu_ms_per_run": round(1000 * worker_cpu / done, 3),
        }
    finally:
        for worker in workers:
            worker.stop()
        await redis.aclose()
        redis_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pools", description=__doc__)
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per layout")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in layouts()}
    for _ in range(args.rounds):  # alternate, so a noisy neighbour hits both
        for name, layout in layouts().items():
            results[name].append(asyncio.run(drain(layout, args.runs, args.concurrency)))
            print(name, results[name][-1], flush=True)
    rows = []
    for name, rounds in results.items():
        best = max(rounds, key=lambda r: r["runs_per_second"])
        rows.append(
            [
                name,
                best["runs_per_second"],
                best["redis_cpu_ms_per_run"],
                best["worker_cpu_ms_per_run"],
                ", ".join(str(r["runs_per_second"]) for r in rounds),
            ]
        )
    markdown = (
        "# Claim cost: 20 pipelines in one pool vs 4 pools\n\n"
        f"{args.runs} runs over 20 pipelines, zero LLM latency, 4 worker processes at "
        f"concurrency {args.concurrency}, one Redis; best of {args.rounds} alternating "
        "rounds (all rounds in the last column).\n\n"
        + md_table(
            ["layout", "runs/s", "Redis CPU ms/run", "worker CPU ms/run", "rounds (runs/s)"],
            rows,
        )
    )
    write_results(
        "pools",
        {"machine": machine_info(), "args": vars(args), "results": results},
        markdown,
    )
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
