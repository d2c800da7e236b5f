"""Profile one langscale worker draining a full queue, in-process, with cProfile.

``python -m bench.profile_worker --concurrency 500 --jobs 3000`` prints the top functions by
cumulative and by own time, and CPU ms per job. Diagnostic only: not part of the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from typing import Any

from bench.pickup import KEYSPACE, enqueue_langscale
from langscale.localredis import start_local_redis


async def _drain(worker: Any, url: str) -> None:
    """Run the worker until the queue is empty and nothing runs, then stop it."""
    from redis.asyncio import Redis

    task = asyncio.create_task(worker.run())
    redis = Redis.from_url(url)
    try:
        while not task.done():
            await asyncio.sleep(0.2)
            queued = await redis.zcard(KEYSPACE.queue(0, "chat"))
            if not queued and not worker.running:
                worker.stop()
        await task
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker")
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-profile", action="store_true", help="only time it")
    args = parser.parse_args(argv)
    redis = start_local_redis()
    try:
        os.environ.update(
            LANGSCALE_REDIS_URL=redis.url,
            LANGSCALE_FAKE_LATENCY=str(args.latency),
            LANGSCALE_WORKER_CONCURRENCY=str(args.concurrency),
            LANGSCALE_LOG_LEVEL="WARNING",
        )
        from langscale.logs import configure_logging
        from langscale.settings import get_settings
        from langscale_worker.main import build_worker

        settings = get_settings()
        configure_logging(settings, "worker")
        worker = build_worker(settings)
        enqueue_langscale(redis.url, args.jobs)
        profiler = cProfile.Profile()
        cpu0, t0 = time.process_time(), time.monotonic()
        if not args.no_profile:
            profiler.enable()
        asyncio.run(_drain(worker, redis.url))
        if not args.no_profile:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        print(
            f"{args.jobs} jobs in {wall:.2f} s = {args.jobs / wall:.1f} jobs/s; "
            f"CPU {cpu:.2f} s = {1000 * cpu / args.jobs:.2f} ms/job "
            f"({'with' if not args.no_profile else 'without'} profiler)"
        )
        if not args.no_profile:
            stats = pstats.Stats(profiler).strip_dirs()
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
