"""Redis memory per finished run (issue 16): what a run leaves behind, and for how long.

A real stack (private Redis, one ``langscale worker``, one ``langscale gateway``, the
built-in ``chat`` pipeline on the fake model at latency 0) takes N runs through ``POST
/v1/runs`` with the question "f" (output "You said: f"), first not streamed, then
streamed (``"stream": true``: the run has an event stream nobody reads); then N runs with
a 200-character question (a 210-byte output, beyond the 64 bytes a compact listpack hash
holds), with Redis's defaults and with ``hash-max-listpack-value 1024``; last, streamed
runs with ``stream-node-max-bytes 512`` (Redis 7 preallocates a stream's first node up to
that, 4 KB by default). After each
batch has ended, it measures:

- ``used_memory`` (INFO memory) after minus before the batch, per run: everything the runs
  left, allocator and key-table overhead included (a warm-up batch first, so the key table
  has grown already);
- ``MEMORY USAGE <key> SAMPLES 0`` and ``OBJECT ENCODING`` of each kind of key of a sample
  of runs (run hash, event stream, LLM replay hash), and the keys per run.

Peer in the same run: plain arq 0.28 (``bench.peers.arq_peer``, minimal job), whose
finished job keeps its pickled result for ``keep_result`` (1 h by default), measured the
same way (N jobs, ``used_memory`` delta and ``MEMORY USAGE`` of the result keys).

A finished run's hash lives ``LANGSCALE_RESULT_TTL`` (24 h), its stream
``LANGSCALE_STREAM_TTL`` (1 h); docs/capacity.md turns these figures into Redis sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any

import httpx

from bench.common import (
    Proc,
    arq_worker,
    git_state,
    langscale_gateway,
    langscale_worker,
    machine_info,
    md_table,
    sync_redis,
    wait_quiet,
    wait_until,
    write_results,
)
from bench.loadgen import RawHTTP
from langscale.keys import Keyspace
from langscale.localredis import LocalRedis, free_port, start_local_redis

KEYSPACE = Keyspace()
SAMPLE = 200  # runs whose keys are measured one by one
FINAL = {"succeeded", "failed", "cancelled"}


def used_memory(r: Any) -> int:
    return int(r.info("memory")["used_memory"])


def key_sizes(r: Any, keys: list[str]) -> dict[str, Any]:
    """Mean MEMORY USAGE (bytes) of the keys that exist, their encodings, how many exist."""
    sizes: list[int] = []
    encodings: dict[str, int] = {}
    for key in keys:
        usage = r.memory_usage(key, samples=0)
        if usage is None:
            continue
        sizes.append(usage)
        encoding = r.object("encoding", key)
        encoding = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
        encodings[encoding] = encodings.get(encoding, 0) + 1
    return {
        "present": len(sizes),
        "of": len(keys),
        "mean_bytes": round(sum(sizes) / len(sizes), 1) if sizes else 0,
        "encodings": encodings,
    }


# --------------------------------------------------------------------------------------
# langscale
# --------------------------------------------------------------------------------------


LONG_QUESTION = "f" * 200


async def _submit(port: int, n: int, stream: bool, question: str, clients: int = 32) -> list[str]:
    raw = RawHTTP("127.0.0.1", port)
    ids: list[str] = []
    numbers = iter(range(n))
    payload = {"pipeline": "chat", "input": {"question": question}, "stream": stream}
    body = json.dumps(payload).encode()

    async def client() -> None:
        for _ in numbers:
            status, data = await raw.request("POST", "/v1/runs", body)
            if status != 202:
                raise RuntimeError(f"submit answered {status}: {data[:200]!r}")
            ids.append(json.loads(data)["run_id"])

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await raw.aclose()
    return ids


def _all_ended(r: Any, ids: list[str]) -> bool:
    pipe = r.pipeline(transaction=False)
    for run_id in ids:
        pipe.hget(KEYSPACE.run(run_id), "state")
    return all(s is not None and s.decode() in FINAL for s in pipe.execute())


def _batch(
    r: Any, port: int, procs: list[Proc], n: int, stream: bool, question: str = "f"
) -> dict[str, Any]:
    before = used_memory(r)
    keys_before = int(r.dbsize())
    ids = asyncio.run(_submit(port, n, stream, question))
    wait_until(lambda: _all_ended(r, ids), 60 + n / 20, 0.5, procs)
    time.sleep(1.5)  # per-second completion counters of the last seconds settle
    after = used_memory(r)
    states: dict[str, int] = {}
    pipe = r.pipeline(transaction=False)
    for run_id in ids:
        pipe.hget(KEYSPACE.run(run_id), "state")
    for state in pipe.execute():
        states[state.decode()] = states.get(state.decode(), 0) + 1
    sample = random.Random(16).sample(ids, min(SAMPLE, len(ids)))
    run = key_sizes(r, [KEYSPACE.run(i) for i in sample])
    events = key_sizes(r, [KEYSPACE.events(i) for i in sample])
    replay = key_sizes(r, [KEYSPACE.replay(i) for i in sample])
    example = {k.decode(): v.decode() for k, v in r.hgetall(KEYSPACE.run(sample[0])).items()}
    return {
        "streamed": stream,
        "redis_version": r.info("server")["redis_version"],
        "output_bytes": len(example.get("output", "")),
        "hash_max_listpack_value": int(r.config_get("hash-max-*-value").popitem()[1]),
        "runs": n,
        "states": states,
        "used_memory_per_run_bytes": round((after - before) / n, 1),
        "keys_per_run": round((int(r.dbsize()) - keys_before) / n, 2),
        "run_hash": run,
        "event_stream": events,
        "replay_hash": replay,
        "memory_usage_per_run_bytes": round(
            run["mean_bytes"] * run["present"] / len(sample)
            + events["mean_bytes"] * events["present"] / len(sample)
            + replay["mean_bytes"] * replay["present"] / len(sample),
            1,
        ),
        "example_run_hash": example,
        "ttl_run_hash_s": r.ttl(KEYSPACE.run(sample[0])),
        "ttl_event_stream_s": r.ttl(KEYSPACE.events(sample[0])),
    }


def measure_langscale(n: int) -> list[dict[str, Any]]:
    redis: LocalRedis = start_local_redis()
    settings = {"fake_latency": 0, "worker_http_port": 0}
    worker = langscale_worker("memory-worker", redis.url, **settings).start()
    port = free_port()
    gateway = langscale_gateway("memory-gateway", redis.url, port, **settings).start()
    procs = [worker, gateway]
    r = sync_redis(redis.url)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, 0.2, procs)
        results = []
        listpack_value = next(iter(r.config_get("hash-max-*-value")))
        cases: list[tuple[bool, str, dict[str, int]]] = [
            (False, "f", {}),
            (True, "f", {}),
            (False, LONG_QUESTION, {}),
            (False, LONG_QUESTION, {listpack_value: 1024}),
            # Redis 7 preallocates a new stream's listpack up to stream-node-max-bytes
            # (4 KB): most of a short stream's bytes.
            (True, "f", {"stream-node-max-bytes": 512}),
        ]
        _batch(r, port, procs, min(n, 500), False)  # warm-up: tables grown, scripts loaded
        for stream, question, config in cases:
            for name, value in config.items():
                r.config_set(name, value)
            quiet = wait_quiet(max_wait=20)
            result = _batch(r, port, procs, n, stream, question)
            result["machine_busy_cpus_before"] = quiet
            result["redis_config"] = config
            results.append(result)
            print(
                f"  -> langscale {'streamed' if stream else 'not streamed'}, output "
                f"{result['output_bytes']} B: {result['used_memory_per_run_bytes']} B/run "
                f"(used_memory), {result['memory_usage_per_run_bytes']} B/run (MEMORY USAGE)",
                flush=True,
            )
        return results
    finally:
        r.close()
        gateway.stop()
        worker.stop()
        redis.stop()


# --------------------------------------------------------------------------------------
# arq, the peer
# --------------------------------------------------------------------------------------


def measure_arq(n: int) -> dict[str, Any]:
    from arq.constants import result_key_prefix

    from bench.pickup import ARQ_QUEUE, enqueue_arq

    redis = start_local_redis()
    worker = arq_worker("memory-arq", redis.url, 100, 0.0, ARQ_QUEUE)
    r = sync_redis(redis.url)
    try:
        worker.start()
        wait_until(lambda: r.exists(ARQ_QUEUE + ":health-check"), 60, 0.2, [worker])
        for round_ in ("warm-up", "measured"):
            count = min(n, 500) if round_ == "warm-up" else n
            before, keys_before = used_memory(r), int(r.dbsize())
            ids = enqueue_arq(redis.url, count)
            wait_until(lambda: r.zcard(ARQ_QUEUE) == 0, 60 + count / 20, 0.25, [worker])
            wait_until(
                lambda ids=ids: all(r.exists(result_key_prefix + i) for i in ids[-20:]),
                30,
                0.25,
                [worker],
            )
            time.sleep(1.5)
        sample = random.Random(16).sample(ids, min(SAMPLE, len(ids)))
        result = key_sizes(r, [result_key_prefix + i for i in sample])
        per_run = round((used_memory(r) - before) / n, 1)
        print(f"  -> arq: {per_run} B/job (used_memory)", flush=True)
        return {
            "jobs": n,
            "used_memory_per_job_bytes": per_run,
            "keys_per_job": round((int(r.dbsize()) - keys_before) / n, 2),
            "result_key": result,
            "ttl_result_s": r.pttl(result_key_prefix + sample[0]) / 1000,
        }
    finally:
        r.close()
        worker.stop()
        redis.stop()


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    text = (
        "# Redis memory per finished run (issue 16)\n\n"
        f"Command: `{data['command']}`  \n{m['cpus']} CPUs, load at start "
        f"{m['loadavg_at_start']}, git {data['git']['head']}, Redis "
        f"{data['langscale'][0]['redis_version']}.\n\n"
        'Built-in `chat` pipeline, question "f" (output "You said: f"), through `POST '
        "/v1/runs`; bytes measured after every run ended.\n\n"
    )
    rows = []
    for r in data["langscale"]:
        what = "langscale, streamed" if r["streamed"] else "langscale, not streamed"
        what += f", output {r['output_bytes']} B"
        if r["output_bytes"] > 64:
            what += f" (hash-max-listpack-value {r['hash_max_listpack_value']})"
        if "stream-node-max-bytes" in r.get("redis_config", {}):
            what += f" (stream-node-max-bytes {r['redis_config']['stream-node-max-bytes']})"
        rows.append(
            [
                what,
                r["runs"],
                r["used_memory_per_run_bytes"],
                r["memory_usage_per_run_bytes"],
                f"{r['run_hash']['mean_bytes']:g} ({', '.join(r['run_hash']['encodings'])})",
                f"{r['event_stream']['mean_bytes']:g} ({r['event_stream']['present']}/"
                f"{r['event_stream']['of']})",
                f"{r['replay_hash']['present']}/{r['replay_hash']['of']}",
                r["keys_per_run"],
                f"hash {r['ttl_run_hash_s']} s, stream {r['ttl_event_stream_s']} s",
            ]
        )
    arq = data.get("arq")
    if arq:
        encodings = ", ".join(arq["result_key"]["encodings"])
        rows.append(
            [
                "arq (peer): job result",
                arq["jobs"],
                arq["used_memory_per_job_bytes"],
                arq["result_key"]["mean_bytes"],
                f"{arq['result_key']['mean_bytes']:g} ({encodings})",
                "–",
                "–",
                arq["keys_per_job"],
                f"result {arq['ttl_result_s']:.0f} s",
            ]
        )
    text += md_table(
        [
            "what",
            "runs",
            "used_memory B/run",
            "MEMORY USAGE B/run",
            "run hash B (encoding)",
            "stream B (present)",
            "replay hashes left",
            "keys/run",
            "TTL left",
        ],
        rows,
    )
    example = data["langscale"][0]["example_run_hash"]
    text += (
        "\nA finished, unstreamed run's hash: `"
        + json.dumps(example, separators=(",", ":"))
        + "`\n\nused_memory includes Redis's key table and expiry entries and allocator "
        "rounding; MEMORY USAGE counts the keys themselves. The target (issue 16): ≤ 1 KB "
        "for a finished run nobody streamed. Capacity arithmetic: docs/capacity.md.\n"
    )
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=2000, help="runs per batch")
    parser.add_argument("--quick", action="store_true", help="500 runs per batch")
    parser.add_argument("--no-peer", action="store_true", help="skip arq")
    parser.add_argument("--name", default="memory", help="results file stem")
    args = parser.parse_args(argv)
    n = 500 if args.quick else args.runs
    given = argv if argv is not None else sys.argv[1:]
    data: dict[str, Any] = {
        "command": "python -m bench memory " + " ".join(given),
        "machine": machine_info(),
        "git": git_state(),
    }
    print(f"[memory] langscale, {n} runs not streamed, then {n} streamed", flush=True)
    data["langscale"] = measure_langscale(n)
    if not args.no_peer:
        print(f"[memory] arq, {n} jobs", flush=True)
        data["arq"] = measure_arq(n)
    text = markdown(data)
    json_path, md_path = write_results(args.name, data, text)
    print(text)
    print(f"wrote {json_path} and {md_path}")
    if args.name == "memory":
        from bench import capacity

        print(capacity.write())
    return data


if __name__ == "__main__":
    main()
