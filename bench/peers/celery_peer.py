"""Celery peer: Redis broker and result backend, run with ``--pool threads``.

The task runs the same chat chain as langscale's built-in pipeline (prompt | FakeChatModel |
parser), synchronously (``chain.invoke``: the fake model waits with ``time.sleep``), or just
sleeps when BENCH_CELERY_TASK=sleep. It returns its start and finish times so the benchmark
can split queue time from run time.

Worker: ``celery -A bench.peers.celery_peer worker --pool threads --concurrency C -Q bench``
with BENCH_REDIS_URL and BENCH_LATENCY.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from typing import Any

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")
LATENCY = float(os.environ.get("BENCH_LATENCY", "0"))
MODE = os.environ.get("BENCH_CELERY_TASK", "chain")

app = Celery("bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue="bench",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@lru_cache(maxsize=1)
def _chain() -> Any:
    from bench.peers.baseline import build_chain

    return build_chain(LATENCY)


@app.on_after_finalize.connect
def _warm(**_: Any) -> None:
    if MODE == "chain":
        _chain()  # build the chain (imports) before taking jobs


@app.task(name="bench.chat")
def chat(question: str) -> dict[str, Any]:
    started = time.time()
    if MODE == "chain":
        output = _chain().invoke({"question": question})
    else:
        time.sleep(LATENCY)
        output = question
    return {"output": output, "started_at": started, "finished_at": time.time()}
