"""No-queue baseline: one asyncio process running the same chat chain as langscale's
built-in ``chat`` pipeline (prompt | FakeChatModel | parser) with ``asyncio.gather`` under a
concurrency limit. It is the ceiling for any queue: no Redis, no HTTP.

``python -m bench.peers.baseline --runs N --concurrency C --latency L`` prints one JSON line:
runs/s, CPU seconds of this process during the runs, and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


def build_chain(latency: float):  # type: ignore[no-untyped-def]
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from langscale_worker.providers.fake import FakeChatModel, FakeLatency

    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), ("human", "{question}")]
    )
    model = FakeChatModel(latency=FakeLatency(median=latency))
    return (prompt | model | StrOutputParser()).with_config(run_name="chat")


async def run(runs: int, concurrency: int, latency: float) -> dict[str, float]:
    chain = build_chain(latency)
    await chain.ainvoke({"question": "warm up"})
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            await chain.ainvoke({"question": f"q{i}"})
            latencies.append(time.perf_counter() - t)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    latencies.sort()
    return {
        "runs": runs,
        "concurrency": concurrency,
        "latency_s": latency,
        "wall_s": round(wall, 3),
        "runs_per_s": round(runs / wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_run": round(1000 * cpu / runs, 3),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.baseline")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.runs, args.concurrency, args.latency))))


if __name__ == "__main__":
    main()
