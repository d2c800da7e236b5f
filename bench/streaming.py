"""Streaming relay latency: how long a chunk takes from the worker to the client.

``python -m bench.streaming [--streams 100] [--tokens 40] [--tokens-per-second 20]``

N concurrent runs with ``"stream": true`` on the fake model, each followed by one client
on ``GET /v1/runs/{id}/stream``. A chunk's production time is its Redis Stream entry id
(Redis's clock, in ms, at the worker's XADD right after the model yields it); its arrival
is the client's clock when the SSE event is parsed (same machine). Added latency per chunk
= arrival − production: the gateway's XREAD, SSE framing and HTTP, plus the client itself.
Reported for every chunk and for each stream's first chunk, against the model's own time to
first token.
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
    wait_until,
    write_results,
)
from bench.loadgen import RawHTTP
from bench.sse import sse_events
from langscale.localredis import free_port, start_local_redis


async def follow(http: RawHTTP, question: str) -> tuple[list[float], float | None]:
    body = {"pipeline": "chat", "input": {"question": question}, "stream": True}
    _, data = await http.request("POST", "/v1/runs", json.dumps(body).encode())
    run_id = json.loads(data)["run_id"]
    added: list[float] = []
    first: float | None = None
    path = f"/v1/runs/{run_id}/stream"
    async for event_id, event, _ in sse_events(http.port, path, host=http.host):
        if event == "data":
            delay = time.time() - int(event_id.split("-")[0]) / 1000
            added.append(delay)
            if first is None:
                first = delay
        elif event == "end":
            break
    return added, first


async def drive(port: int, streams: int, tokens: int) -> dict[str, Any]:
    question = " ".join(f"w{i}" for i in range(tokens - 2))  # "You said:" + words
    http = RawHTTP("127.0.0.1", port)
    started = time.monotonic()
    results = await asyncio.gather(*(follow(http, question) for _ in range(streams)))
    wall = time.monotonic() - started
    await http.aclose()
    chunks = [d for added, _ in results for d in added]
    firsts = [f for _, f in results if f is not None]
    return {
        "streams": streams,
        "chunks": len(chunks),
        "wall_s": round(wall, 2),
        "added_per_chunk": latency_summary(chunks),
        "added_first_chunk": latency_summary(firsts),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streaming")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--tokens-per-second", type=float, default=20)
    parser.add_argument("--latency", type=float, default=0.5, help="time to first token, s")
    args = parser.parse_args(argv)
    redis = start_local_redis()
    port = free_port()
    settings = {
        "fake_latency": args.latency,
        "fake_tokens_per_second": args.tokens_per_second,
        "worker_concurrency": max(100, args.streams),
        "worker_http_port": 0,
    }
    worker = langscale_worker("worker", redis.url, **settings)
    gateway = langscale_gateway("gateway", redis.url, port, **settings)
    procs = [worker, gateway]
    try:
        for proc in procs:
            proc.start()
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, procs=procs)
        asyncio.run(drive(port, 5, 5))  # warm up
        cpu_before = {p.name: cpu_seconds(p.pid) for p in procs}
        client_before = time.process_time()
        result = asyncio.run(drive(port, args.streams, args.tokens))
        result["cpu_s"] = {p.name: round(cpu_seconds(p.pid) - cpu_before[p.name], 2) for p in procs}
        result["cpu_s"]["client"] = round(time.process_time() - client_before, 2)
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()
    data = {
        "command": "python -m bench.streaming " + " ".join(argv or []),
        "model_time_to_first_token_s": args.latency,
        "model_seconds_between_tokens": round(1 / args.tokens_per_second, 4),
        "machine": machine_info(),
        **result,
    }
    per, first = result["added_per_chunk"], result["added_first_chunk"]
    text = "# Streaming relay latency (issue 3)\n\n"
    text += f"Command: `{data['command']}`; {args.streams} concurrent streams of "
    text += f"{args.tokens} tokens, model time to first token {args.latency} s, "
    text += f"{data['model_seconds_between_tokens']} s between tokens.\n\n"
    text += md_table(
        ["worker → client", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        [
            ["every chunk", per["p50_ms"], per["p90_ms"], per["p99_ms"], per["max_ms"]],
            ["first chunk", first["p50_ms"], first["p90_ms"], first["p99_ms"], first["max_ms"]],
        ],
    )
    write_results("streaming", data, text)
    print(text)
    print(json.dumps({k: result[k] for k in ("chunks", "wall_s", "cpu_s")}))


if __name__ == "__main__":
    main()
