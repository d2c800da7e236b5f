"""Outgoing LLM calls measured: shared rate limit, embeddings batching, LLM cache.

Standalone: ``python -m bench.ratelimit [--quick] [--only limit,batch,cache]``.

Everything is real but the provider: a private ``redis-server``, 4 ``langscale worker``
processes, runs queued with ``RunStore.submit`` (what the gateway does), and the local
OpenAI-compatible server of the tests (``tests/fakes/openai_server.py``) as the provider,
which records the arrival time of every request.

1. limit: 600 requests/min shared by 4 workers, saturated for 2 minutes (``--quick``:
   30 s at the same rate with a 10 s window, i.e. 100 per 10 s). Reports the most requests
   the provider saw in any window over the limit (target <= 1.02) and the throughput over
   the limit (target >= 0.95).
2. batch: 200 concurrent embed runs of 8 texts, batching on (default 5 ms) vs off:
   provider calls and median run time.
3. cache: a repeated workload (40 questions, 10 waves), cache on vs off: hit ratio and
   median run time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.common import enqueue_runs, run_store
from langscale.contract import RunRecord
from langscale.keys import Keyspace
from langscale.lifecycle import RunStore
from langscale.localredis import LocalRedis, free_port, start_local_redis

ROOT = Path(__file__).resolve().parent.parent
LOGS = Path(tempfile.mkdtemp(prefix="langscale-bench-ratelimit-"))
QUEUE = "langscale:queue"
WORKERS = 4


class Provider:
    """The local OpenAI-compatible server, in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = (LOGS / "provider.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fakes" / "openai_server.py"), str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/control").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the provider did not start")

    def control(self, **values: Any) -> None:
        httpx.post(f"{self.url}/control", json=values)

    def requests(self, path: str) -> list[dict[str, Any]]:
        report = httpx.get(f"{self.url}/control", timeout=30).json()
        return [r for r in report["requests"] if r["path"] == path]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_workers(redis: LocalRedis, provider: Provider, **settings: Any) -> list[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGSCALE_")}
    env.update(
        {
            "LANGSCALE_REDIS_URL": redis.url,
            "LANGSCALE_LLM_PROVIDER": "openai",
            "LANGSCALE_OPENAI_BASE_URL": f"{provider.url}/v1",
            "LANGSCALE_OPENAI_API_KEY": "sk-bench",
            "LANGSCALE_OPENAI_MODEL": "bench-model",
            "LANGSCALE_OPENAI_EMBEDDING_MODEL": "bench-embedder",
            "LANGSCALE_LOG_LEVEL": "WARNING",
            "LANGSCALE_WORKER_HTTP_PORT": "0",
        }
    )
    env.update({f"LANGSCALE_{k.upper()}": str(v) for k, v in settings.items()})
    workers = []
    for index in range(WORKERS):
        log = (LOGS / f"worker-{index}.log").open("ab")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "langscale.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        )
    return workers


def stop_workers(workers: list[Any]) -> None:
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.wait()


async def wait_workers(redis: Redis, count: int) -> None:
    deadline = time.monotonic() + 120
    while await redis.zcard(Keyspace().workers) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not start (logs in {LOGS})")
        await asyncio.sleep(0.2)


async def run_batch(store: RunStore, pipeline: str, inputs: list[Any]) -> list[RunRecord]:
    ids = await enqueue_runs(store, pipeline, inputs)
    while True:
        records = await store.get_many(ids)
        if all(r is not None and r.state.is_final for r in records):
            return [r for r in records if r is not None]
        await asyncio.sleep(0.1)


def run_seconds(records: list[RunRecord]) -> float:
    """Median time a run spent from start to end on its worker."""
    return statistics.median(
        (r.finished_at or 0) - (r.started_at or 0) for r in records if r.started_at
    )


async def fresh(redis: Redis, provider: Provider) -> None:
    await redis.flushdb()
    provider.control(requests=[], fail_next=0, headers={}, latency=0.0)


async def bench_limit(redis_server: LocalRedis, provider: Provider, quick: bool) -> dict[str, Any]:
    duration, window = (30.0, 10.0) if quick else (120.0, 60.0)
    limit = int(600 * window / 60)  # 600 per minute either way
    redis = Redis.from_url(redis_server.url)
    await fresh(redis, provider)
    provider.control(latency=0.2)
    workers = start_workers(
        redis_server,
        provider,
        llm_rate_limits=f"openai/bench-model={limit}",
        llm_rate_window=window,
    )
    try:
        await wait_workers(redis, WORKERS)
        store = run_store(redis, redis_server.url)
        runs = int(600 / 60 * duration * 1.3)  # more than the budget allows: saturated
        await enqueue_runs(store, "chat", [{"question": f"q{i}"} for i in range(runs)])
        first: float | None = None
        while True:  # until the provider has seen `duration` seconds of traffic
            await asyncio.sleep(1.0)
            seen = provider.requests("chat")
            if seen:
                first = first or min(r["at"] for r in seen)
                if time.time() - first >= duration + 1:
                    break
        arrivals = sorted(r["at"] for r in provider.requests("chat"))
    finally:
        stop_workers(workers)
        await redis.aclose()
    assert first is not None
    measured = [t for t in arrivals if t < first + duration]
    # Every window of the budget's length that starts at an arrival (the worst case).
    most = 0
    end = 0
    for start_index, start in enumerate(measured):
        while end < len(measured) and measured[end] < start + window:
            end += 1
        most = max(most, end - start_index)
    expected = 600 / 60 * duration
    return {
        "duration_s": duration,
        "window_s": window,
        "limit_per_window": limit,
        "workers": WORKERS,
        "provider_requests": len(measured),
        "max_in_any_window": most,
        "max_over_limit": round(most / limit, 4),
        "throughput_over_limit": round(len(measured) / expected, 4),
    }


async def bench_batch(redis_server: LocalRedis, provider: Provider) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, wait_ms in (("batched", 5), ("unbatched", 0)):
        redis = Redis.from_url(redis_server.url)
        await fresh(redis, provider)
        provider.control(latency=0.05)
        workers = start_workers(redis_server, provider, embed_batch_wait_ms=wait_ms)
        try:
            await wait_workers(redis, WORKERS)
            store = run_store(redis, redis_server.url)
            warm = [{"texts": ["warm"]}] * 8
            await run_batch(store, "embed", warm)
            provider.control(requests=[])
            inputs = [{"texts": [f"run {i} text {j}" for j in range(8)]} for i in range(200)]
            records = await run_batch(store, "embed", inputs)
            assert all(r.state.value == "succeeded" for r in records)
            calls = provider.requests("embeddings")
            results[label] = {
                "runs": len(records),
                "provider_calls": len(calls),
                "texts": sum(c["n"] for c in calls),
                "median_run_s": round(run_seconds(records), 4),
            }
        finally:
            stop_workers(workers)
            await redis.aclose()
    results["calls_ratio"] = round(
        results["batched"]["provider_calls"] / results["unbatched"]["provider_calls"], 4
    )
    results["added_median_latency_ms"] = round(
        1000 * (results["batched"]["median_run_s"] - results["unbatched"]["median_run_s"]), 1
    )
    return results


async def bench_cache(redis_server: LocalRedis, provider: Provider) -> dict[str, Any]:
    results: dict[str, Any] = {}
    questions, waves = 40, 10
    for label, pipelines in (("cache_on", "chat"), ("cache_off", "")):
        redis = Redis.from_url(redis_server.url)
        await fresh(redis, provider)
        provider.control(latency=0.2)
        workers = start_workers(redis_server, provider, llm_cache_pipelines=pipelines)
        try:
            await wait_workers(redis, WORKERS)
            store = run_store(redis, redis_server.url)
            records: list[RunRecord] = []
            for _ in range(waves):
                inputs = [{"question": f"question {i}"} for i in range(questions)]
                records += await run_batch(store, "chat", inputs)
            assert all(r.state.value == "succeeded" for r in records)
            calls = len(provider.requests("chat"))
            results[label] = {
                "runs": len(records),
                "provider_calls": calls,
                "hit_ratio": round(1 - calls / len(records), 4),
                "median_run_s": round(run_seconds(records), 4),
            }
        finally:
            stop_workers(workers)
            await redis.aclose()
    return results


async def main(quick: bool, only: set[str]) -> dict[str, Any]:
    redis_server = start_local_redis()
    provider = Provider()
    report: dict[str, Any] = {"quick": quick, "logs": str(LOGS)}
    try:
        if "limit" in only:
            report["limit"] = await bench_limit(redis_server, provider, quick)
            print(json.dumps({"limit": report["limit"]}), flush=True)
        if "batch" in only:
            report["batch"] = await bench_batch(redis_server, provider)
            print(json.dumps({"batch": report["batch"]}), flush=True)
        if "cache" in only:
            report["cache"] = await bench_cache(redis_server, provider)
            print(json.dumps({"cache": report["cache"]}), flush=True)
    finally:
        provider.stop()
        redis_server.stop()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s limit run (10 s window)")
    parser.add_argument("--only", default="limit,batch,cache", help="scenarios to run")
    parser.add_argument("--out", type=Path, help="also write the report (JSON) here")
    args = parser.parse_args()
    result = asyncio.run(main(args.quick, set(args.only.split(","))))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
