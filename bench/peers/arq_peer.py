"""Plain arq 0.28 worker with a minimal job, for side-by-side comparison.

``python -m bench.peers.arq_peer`` with BENCH_REDIS_URL, BENCH_MAX_JOBS, BENCH_LATENCY,
BENCH_QUEUE. arq defaults otherwise (poll_delay 0.5 s, pickle serializer, keep_result 1 h).
Returns its start/finish times so the benchmark can split queue time from run time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from arq.connections import RedisSettings
from arq.worker import Worker

LATENCY = float(os.environ.get("BENCH_LATENCY", "0.5"))


async def job(ctx: dict, *args: object) -> float:
    await asyncio.sleep(LATENCY)
    return time.time()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)  # as langscale: no per-job INFO lines
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    redis_settings.conn_timeout = 5
    worker = Worker(
        functions=[job],
        redis_settings=redis_settings,
        max_jobs=int(os.environ.get("BENCH_MAX_JOBS", "100")),
        queue_name=os.environ.get("BENCH_QUEUE", "arq:queue"),
    )
    worker.run()


if __name__ == "__main__":
    main()
