"""Priority 1 (issue 2): prompt pickup.

For concurrency C in (100, 500) and a job latency of 0.5 s, fill a queue with N = k*C jobs
(k = 12; 6 with --quick) and let ONE worker process drain it:

- langscale: ``python -m langscale.cli worker`` (built-in ``chat`` pipeline on the fake
  model, LANGSCALE_FAKE_LATENCY=0.5, LANGSCALE_WORKER_CONCURRENCY=C), jobs put on the queue
  with ``langscale.lifecycle.RunStore.submit`` (the gateway is not measured);
- plain arq 0.28: ``bench.peers.arq_peer`` (``async def job(ctx): await asyncio.sleep(0.5)``,
  max_jobs=C, default poll_delay 0.5 s), jobs written in arq's own format.

Throughput is measured in steady state from the completion timestamps (``finished_at`` of
each run hash; arq's stored result ``finish_time``): the rate between the C-th and the
(N-C)-th completion, i.e. without the first wave and the tail where the queue runs dry.
Ideal = C / latency. CPU of the worker and of Redis in the same window come from /proc.

Idle CPU: an idle langscale worker and an idle arq worker (C=100), each on its own Redis,
CPU seconds over 10 s (utime+stime from /proc/<pid>/stat), plus Redis commands/s each
causes.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import time
import uuid
from typing import Any

from bench.common import (
    CpuSampler,
    Proc,
    arq_worker,
    cpu_seconds,
    enqueue_runs,
    git_state,
    langscale_worker,
    machine_info,
    md_table,
    peak_rss_mb,
    run_store,
    sync_redis,
    wait_quiet,
    wait_until,
    write_results,
)
from langscale.keys import Keyspace
from langscale.localredis import LocalRedis, start_local_redis

KEYSPACE = Keyspace()
ARQ_QUEUE = "arq:queue"


def langscale_unfinished(r: Any) -> int:
    """Runs of the bench's pipeline queued or running (one partition)."""
    return int(r.zcard(KEYSPACE.queue(0, "chat")) + r.zcard(KEYSPACE.leases(0, "chat")))


# --------------------------------------------------------------------------------------
# filling the queues
# --------------------------------------------------------------------------------------


async def _enqueue_langscale(url: str, n: int) -> list[str]:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        store = run_store(redis, url)
        return await enqueue_runs(store, "chat", [{"question": f"q{i}"} for i in range(n)])
    finally:
        await redis.aclose()


def enqueue_langscale(url: str, n: int) -> list[str]:
    return asyncio.run(_enqueue_langscale(url, n))


def enqueue_arq(url: str, n: int, queue: str = ARQ_QUEUE) -> list[str]:
    """Jobs exactly as ``ArqRedis.enqueue_job`` writes them (pickle, job key + zadd),
    pipelined instead of one WATCH transaction per job."""
    from arq.constants import job_key_prefix
    from arq.jobs import serialize_job

    r = sync_redis(url)
    ids: list[str] = []
    for start in range(0, n, 500):
        pipe = r.pipeline(transaction=True)
        now_ms = int(time.time() * 1000)
        for _ in range(start, min(n, start + 500)):
            job_id = uuid.uuid4().hex
            payload = serialize_job("job", (), {}, None, now_ms)
            pipe.psetex(job_key_prefix + job_id, 86_400_000, payload)
            pipe.zadd(queue, {job_id: now_ms})
            ids.append(job_id)
        pipe.execute()
    r.close()
    return ids


# --------------------------------------------------------------------------------------
# completion timestamps
# --------------------------------------------------------------------------------------


def langscale_times(url: str, ids: list[str]) -> tuple[list[float], list[float], dict[str, int]]:
    r = sync_redis(url)
    starts, finishes, states = [], [], {}
    for i in range(0, len(ids), 1000):
        pipe = r.pipeline(transaction=False)
        for run_id in ids[i : i + 1000]:
            pipe.hmget(KEYSPACE.run(run_id), "state", "started", "finished")
        for state, started, finished in pipe.execute():
            s = state.decode() if state else "missing"
            states[s] = states.get(s, 0) + 1
            if started and finished:  # ms, Redis clock
                starts.append(int(started) / 1000)
                finishes.append(int(finished) / 1000)
    r.close()
    return starts, finishes, states


def arq_times(url: str, ids: list[str]) -> tuple[list[float], list[float], dict[str, int]]:
    from arq.constants import result_key_prefix

    r = sync_redis(url)
    starts, finishes, states = [], [], {}
    for i in range(0, len(ids), 1000):
        pipe = r.pipeline(transaction=False)
        for job_id in ids[i : i + 1000]:
            pipe.get(result_key_prefix + job_id)
        for raw in pipe.execute():
            if raw is None:
                states["missing"] = states.get("missing", 0) + 1
                continue
            d = pickle.loads(raw)  # arq's own result format (arq.jobs.serialize_result)
            key = "succeeded" if d["s"] else "failed"
            states[key] = states.get(key, 0) + 1
            starts.append(d["st"] / 1000)
            finishes.append(d["ft"] / 1000)
    r.close()
    return starts, finishes, states


def steady_rate(finishes: list[float], c: int) -> tuple[float, float, float]:
    """Completions/s in steady state: from the C-th completion (the first wave is over) for
    a whole number of seconds that ends before the (N-C)-th completion (the queue is still
    full). A whole-second window counts periodic bursts (arq polls every 0.5 s) exactly,
    whatever their phase."""
    f = sorted(finishes)
    n = len(f)
    lo, hi = (c, n - c - 1) if n > 3 * c else (n // 10, n - n // 10 - 1)
    w0 = f[lo]
    span = f[hi] - w0
    w1 = w0 + (float(int(span)) if span >= 1 else span)
    count = sum(1 for t in f if w0 <= t < w1)
    return (count / (w1 - w0) if w1 > w0 else 0.0), w0, w1


def occupancy(starts: list[float], finishes: list[float], w0: float, w1: float) -> float:
    """Mean number of runs inside [started_at, finished_at] during the window."""
    busy = sum(max(0.0, min(f, w1) - max(s, w0)) for s, f in zip(starts, finishes, strict=False))
    return busy / (w1 - w0) if w1 > w0 else 0.0


def per_interval(finishes: list[float], width: float = 0.5) -> list[int]:
    if not finishes:
        return []
    t0 = min(finishes)
    bins = [0] * (int((max(finishes) - t0) / width) + 1)
    for t in finishes:
        bins[int((t - t0) / width)] += 1
    return bins


# --------------------------------------------------------------------------------------
# one throughput scenario
# --------------------------------------------------------------------------------------


def run_drain(system: str, c: int, latency: float, n: int) -> dict[str, Any]:
    quiet = wait_quiet()
    redis = start_local_redis()
    worker: Proc | None = None
    try:
        if system == "langscale":
            ids = enqueue_langscale(redis.url, n)
            unfinished = langscale_unfinished
            worker = langscale_worker(
                f"pickup-langscale-c{c}", redis.url, fake_latency=latency, worker_concurrency=c
            )
        else:
            ids = enqueue_arq(redis.url, n)
            unfinished = lambda r: r.zcard(ARQ_QUEUE)  # noqa: E731 - finished jobs leave it
            worker = arq_worker(f"pickup-arq-c{c}", redis.url, c, latency, ARQ_QUEUE)
        r = sync_redis(redis.url)
        ideal = c / latency
        assert redis.process is not None
        started = time.time()
        worker.start()
        with CpuSampler({"worker": worker.pid, "redis": redis.process.pid}) as sampler:
            # bounded: at least 25% of ideal plus start-up, else fail
            wait_until(
                lambda: unfinished(r) == 0,
                timeout=60 + n / (0.25 * ideal),
                interval=0.25,
                procs=[worker],
            )
            rss = peak_rss_mb(worker.pid)
        r.close()
        fetch = langscale_times if system == "langscale" else arq_times
        starts, finishes, states = fetch(redis.url, ids)
        rate, w0, w1 = steady_rate(finishes, c)
        wall = w1 - w0
        worker_cpu = sampler.between("worker", w0, w1)
        runs = sorted(f - s for s, f in zip(starts, finishes, strict=False))
        in_flight = occupancy(starts, finishes, w0, w1)
        redis_cpu = sampler.between("redis", w0, w1)
        return {
            "system": system,
            "concurrency": c,
            "latency_s": latency,
            "jobs": n,
            "states": states,
            "ideal_jobs_per_s": ideal,
            "jobs_per_s": round(rate, 1),
            "pct_of_ideal": round(100 * rate / ideal, 1),
            "window_s": round(wall, 2),
            # time inside the job function (started_at..finished_at), and how many slots
            # were inside it on average: pct_of_ideal ~= slot_occupancy * latency / run time
            "run_time_p50_ms": round(1000 * runs[len(runs) // 2], 1) if runs else None,
            "run_time_p99_ms": round(1000 * runs[int(len(runs) * 0.99) - 1], 1) if runs else None,
            "slot_occupancy": round(in_flight / c, 3),
            "worker_cpu_util_in_window": round(worker_cpu / wall, 3) if wall else None,
            "worker_cpu_ms_per_job": round(1000 * worker_cpu / (rate * wall), 3) if rate else None,
            "redis_cpu_util_in_window": round(redis_cpu / wall, 3) if wall else None,
            "worker_cpu_total_s": round(sampler.samples[-1][1]["worker"], 2),
            "worker_peak_rss_mb": round(rss, 1),
            "first_completion_after_start_s": round(min(finishes) - started, 2)
            if finishes
            else None,
            "machine_busy_cpus_before": quiet,
            "foreign_cpus_in_window": sampler.foreign(w0, w1),
            "completions_per_0.5s": per_interval(finishes),
        }
    finally:
        if worker:
            worker.stop()
        redis.stop()


# --------------------------------------------------------------------------------------
# idle CPU
# --------------------------------------------------------------------------------------


def _commands(r: Any) -> int:
    return int(r.info("stats")["total_commands_processed"])


def run_idle(seconds: float = 10.0, c: int = 100, latency: float = 0.5) -> dict[str, Any]:
    wait_quiet()
    redises: list[LocalRedis] = [start_local_redis(), start_local_redis()]
    workers = [
        langscale_worker(
            "idle-langscale", redises[0].url, fake_latency=latency, worker_concurrency=c
        ),
        arq_worker("idle-arq", redises[1].url, c, latency, ARQ_QUEUE),
    ]
    try:
        for w in workers:
            w.start()
        clients = [sync_redis(r.url) for r in redises]
        wait_until(lambda: clients[0].zcard(KEYSPACE.workers), timeout=60, procs=workers)
        wait_until(lambda: clients[1].exists(ARQ_QUEUE + ":health-check"), 60, procs=workers)
        time.sleep(3)  # let start-up work settle
        cpu0 = [cpu_seconds(w.pid) for w in workers]
        cmd0 = [_commands(cl) for cl in clients]
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu1 = [cpu_seconds(w.pid) for w in workers]
        cmd1 = [_commands(cl) for cl in clients]
        rss = [peak_rss_mb(w.pid) for w in workers]
        for cl in clients:
            cl.close()
        out = {}
        for i, name in enumerate(["langscale", "arq"]):
            out[name] = {
                "cpu_s": round(cpu1[i] - cpu0[i], 3),
                "cpu_pct": round(100 * (cpu1[i] - cpu0[i]) / elapsed, 2),
                # minus the 2 INFO calls of the measurement itself
                "redis_commands_per_s": round((cmd1[i] - cmd0[i] - 1) / elapsed, 1),
                "peak_rss_mb": round(rss[i], 1),
            }
        out["seconds"] = round(elapsed, 2)
        out["concurrency"] = c
        return out
    finally:
        for w in workers:
            w.stop()
        for r in redises:
            r.stop()


# --------------------------------------------------------------------------------------
# the suite
# --------------------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    rows = []
    by = {(d["system"], d["concurrency"]): d for d in data["drain"]}
    for c in data["concurrencies"]:
        ls, aq = by.get(("langscale", c)), by.get(("arq", c))
        for d in (ls, aq):
            if d is None:
                continue
            ratio = (
                round(ls["jobs_per_s"] / aq["jobs_per_s"], 2)
                if d is ls and ls and aq and aq["jobs_per_s"]
                else None
            )
            rows.append(
                [
                    d["system"],
                    c,
                    d["ideal_jobs_per_s"],
                    d["jobs_per_s"],
                    d["pct_of_ideal"],
                    ratio,
                    d["worker_cpu_util_in_window"],
                    d["worker_cpu_ms_per_job"],
                    d["redis_cpu_util_in_window"],
                    d["worker_peak_rss_mb"],
                    d["run_time_p50_ms"],
                    d["slot_occupancy"],
                    d.get("foreign_cpus_in_window"),
                ]
            )
    text = f"# Prompt pickup (issue 2)\n\nCommand: `{data['command']}`  \n"
    text += f"Latency {data['latency_s']} s, N = {data['jobs_per_c']}×C jobs, one worker process, "
    text += (
        f"{data['machine']['cpus']} CPUs, load at start {data['machine']['loadavg_at_start']}.\n\n"
    )
    text += md_table(
        [
            "system",
            "C",
            "ideal/s",
            "jobs/s",
            "% ideal",
            "langscale/arq",
            "worker CPU util",
            "CPU ms/job",
            "redis CPU util",
            "peak RSS MiB",
            "run p50 ms",
            "slot occupancy",
            "other load (CPUs)",
        ],
        rows,
    )
    idle = data.get("idle")
    if idle:
        text += f"\nIdle workers (C={idle['concurrency']}), {idle['seconds']} s:\n\n"
        text += md_table(
            ["system", "CPU s", "CPU %", "Redis cmds/s", "peak RSS MiB"],
            [
                [
                    k,
                    idle[k]["cpu_s"],
                    idle[k]["cpu_pct"],
                    idle[k]["redis_commands_per_s"],
                    idle[k]["peak_rss_mb"],
                ]
                for k in ("langscale", "arq")
            ],
        )
    text += (
        "\n`other load` = CPUs used by processes outside the benchmark during the "
        "window (the machine is shared); figures with other load > 0.3 are perturbed.\n"
    )
    text += (
        "`run p50` = median time inside the job (started_at..finished_at); `slot "
        "occupancy` = mean share of the C slots inside a job during the window. "
        "% ideal ≈ occupancy × latency / run time: low occupancy = slow pickup, long run "
        "time = a busy event loop.\n"
    )
    text += "\nTarget: langscale ≥ 90% of ideal at both C, idle CPU not noticeably above arq.\n"
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench pickup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="N = 6×C instead of 12×C")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--jobs-per-c", type=int, default=None)
    parser.add_argument("--systems", nargs="+", default=["langscale", "arq"])
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--no-idle", action="store_true")
    parser.add_argument("--name", default="pickup", help="results file stem")
    args = parser.parse_args(argv)
    k = args.jobs_per_c or (6 if args.quick else 12)
    import sys

    data: dict[str, Any] = {
        "command": "python -m bench pickup " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "git": git_state(),
        "latency_s": args.latency,
        "jobs_per_c": k,
        "concurrencies": args.concurrency,
        "drain": [],
    }
    for c in args.concurrency:
        for system in args.systems:
            print(f"[pickup] {system} C={c} N={k * c} latency={args.latency}", flush=True)
            result = run_drain(system, c, args.latency, k * c)
            print(
                f"  -> {result['jobs_per_s']} jobs/s = {result['pct_of_ideal']}% of "
                f"{result['ideal_jobs_per_s']:g}; worker CPU {result['worker_cpu_util_in_window']}"
                f", states {result['states']}",
                flush=True,
            )
            data["drain"].append(result)
    if not args.no_idle:
        print(f"[pickup] idle CPU over {args.idle_seconds} s", flush=True)
        data["idle"] = run_idle(args.idle_seconds)
        print(f"  -> {data['idle']}", flush=True)
    json_path, md_path = write_results(args.name, data, markdown(data))
    print(markdown(data))
    print(f"wrote {json_path} and {md_path}")
    return data


if __name__ == "__main__":
    main()
