"""Priority 2 (issue 8): load generator for the gateway, side by side with peers.

Drives a real stack (private Redis, ``langscale worker`` process(es), ``langscale gateway``)
over HTTP with httpx: ``POST /chat/invoke`` (the built-in chat pipeline on the fake model),
closed loop (K concurrent clients) or open loop (Poisson arrivals at a fixed rate, so
queueing shows). Per run it records the end-to-end latency, then reads ``GET
/v1/runs/{id}`` (after the load phase, on a sample) for the stages: queued = started_at -
created_at, running = finished_at - started_at, gateway-added = end-to-end - (finished_at -
created_at). CPU seconds (utime+stime, /proc/<pid>/stat) of every process in the measured
window and peak RSS (VmHWM) are reported.

Peers, same machine, same fake latency, same concurrency:
- celery: Redis broker + result backend, ``--pool threads --concurrency C``, a task running
  the same chain synchronously (``bench.peers.celery_peer``); client: ``apply_async`` +
  ``get`` in a thread per client;
- arq: plain arq 0.28 with a minimal ``asyncio.sleep`` job (``bench.peers.arq_peer``);
  client: ``enqueue_job`` + ``job.result(poll_delay=...)``;
- baseline: no queue, one asyncio process, ``asyncio.gather`` of ``chain.ainvoke``
  (``bench.peers.baseline``).

Default matrix (~4 min): latency 0 (pure overhead) and 0.5 s at C=100, one worker process,
every system closed loop; then an open-loop sweep of langscale at 0.5 s and a PNG of
latency versus offered load. ``--full`` adds C in (10, 100, 500) × 1 and 2 worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from bench.common import (
    RESULTS,
    CpuSampler,
    Proc,
    arq_worker,
    celery_worker,
    git_state,
    langscale_gateway,
    langscale_worker,
    latency_summary,
    machine_info,
    md_table,
    peak_rss_mb,
    sync_redis,
    wait_quiet,
    wait_until,
    write_results,
)
from langscale.localredis import LocalRedis, free_port, start_local_redis

REQUEST_TIMEOUT = 60.0
MAX_OUTSTANDING = 3000  # open loop: arrivals beyond this are shed (counted), never queued


@dataclass
class Sample:
    t_send: float
    t_recv: float = 0.0
    ok: bool = False
    status: str = ""
    run_id: str = ""
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


# --------------------------------------------------------------------------------------
# systems under test: start, call once, stop
# --------------------------------------------------------------------------------------


class System:
    name = "?"

    def __init__(self, latency: float, concurrency: int, workers: int) -> None:
        self.latency = latency
        self.concurrency = concurrency
        self.n_workers = workers
        self.redis: LocalRedis | None = None
        self.procs: list[Proc] = []

    # processes whose CPU is "server side" (the system), by role
    def pids(self) -> dict[str, int]:
        out = {p.name.split("@")[0]: p.pid for p in self.procs}
        assert self.redis and self.redis.process
        out["redis"] = self.redis.process.pid
        return out

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        if self.redis:
            self.redis.stop()

    async def open(self, clients: int) -> None: ...

    async def close(self) -> None: ...

    async def call(self, i: int) -> Sample:
        raise NotImplementedError

    async def stages(self, samples: list[Sample]) -> None: ...


class RawHTTP:
    """A minimal HTTP/1.1 keep-alive client (JSON bodies with Content-Length).

    httpx's AsyncClient saturated one CPU at ~100 requests/s with 50-200 concurrent
    connections on this machine (even for GET /healthz), so with it the load generator, not
    the gateway, was measured. This client costs a small fraction of that.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        conn = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        try:
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append(conn)
        return status, data

    async def aclose(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def invoke_clients(
    port: int, clients: int, seconds: float, path: str, body: Callable[[int, int], Any]
) -> dict[str, Any]:
    """``clients`` clients POSTing ``body(client, i)`` to ``path`` in a loop for ``seconds``:
    runs/s, errors (non-200), the latency summary of the successful ones and their
    ``latencies`` (seconds)."""
    http = RawHTTP("127.0.0.1", port)
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        i = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status, _ = await http.request("POST", path, json.dumps(body(n, i)).encode())
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1
            i += 1

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.monotonic() - started
    await http.aclose()
    return {
        "runs": len(latencies),
        "errors": errors,
        "runs_per_second": round(len(latencies) / elapsed, 1),
        "latency": latency_summary(latencies),
        "latencies": latencies,
    }


class Langscale(System):
    name = "langscale"
    http_client = "raw"  # or "httpx" (see RawHTTP)

    def start(self) -> None:
        self.redis = start_local_redis()
        settings = {
            "fake_latency": self.latency,
            "worker_concurrency": self.concurrency,
            "max_invoke_timeout": REQUEST_TIMEOUT,
        }
        for i in range(self.n_workers):
            self.procs.append(langscale_worker(f"worker-{i}", self.redis.url, **settings).start())
        self.port = free_port()
        self.gateway = langscale_gateway("gateway", self.redis.url, self.port, **settings).start()
        self.procs.append(self.gateway)
        import httpx

        def ready() -> bool:
            try:
                r = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and r.json().get("workers", 0) >= self.n_workers

        wait_until(ready, 90, 0.2, self.procs)

    async def open(self, clients: int) -> None:
        import httpx

        limit = max(clients, 100)
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=REQUEST_TIMEOUT + 5,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )

        self.raw = RawHTTP("127.0.0.1", self.port)

    async def close(self) -> None:
        await self.client.aclose()
        await self.raw.aclose()

    async def call(self, i: int) -> Sample:
        if self.http_client == "raw":
            return await self._call_raw(i)
        s = Sample(time.time())
        try:
            r = await self.client.post(
                "/chat/invoke",
                json={"input": {"question": f"q{i}"}},
                params={"timeout": REQUEST_TIMEOUT},
            )
            s.status = str(r.status_code)
            if r.status_code == 200:
                s.ok = True
                s.run_id = r.json()["metadata"]["run_id"]
        except Exception as exc:  # counted as an error, by type
            s.status = type(exc).__name__
        s.t_recv = time.time()
        return s

    async def _call_raw(self, i: int) -> Sample:
        s = Sample(time.time())
        try:
            body = json.dumps({"input": {"question": f"q{i}"}}).encode()
            status, data = await self.raw.request(
                "POST", f"/chat/invoke?timeout={REQUEST_TIMEOUT:g}", body
            )
            s.status = str(status)
            if status == 200:
                s.ok = True
                s.run_id = json.loads(data)["metadata"]["run_id"]
        except Exception as exc:
            s.status = type(exc).__name__
        s.t_recv = time.time()
        return s

    async def stages(self, samples: list[Sample], limit: int = 800) -> None:
        """GET /v1/runs/{id} for a random sample of the runs (after the load phase)."""
        done = [s for s in samples if s.ok]
        chosen = random.Random(1).sample(done, min(limit, len(done)))
        sem = asyncio.Semaphore(32)

        async def one(s: Sample) -> None:
            async with sem:
                r = await self.client.get(f"/v1/runs/{s.run_id}")
                if r.status_code == 200:
                    body = r.json()
                    s.created_at = body.get("created_at")
                    s.started_at = body.get("started_at")
                    s.finished_at = body.get("finished_at")

        await asyncio.gather(*(one(s) for s in chosen))


class Arq(System):
    name = "arq"
    queue = "arq:queue"

    def start(self) -> None:
        self.redis = start_local_redis()
        for i in range(self.n_workers):
            self.procs.append(
                arq_worker(
                    f"worker-{i}", self.redis.url, self.concurrency, self.latency, self.queue
                ).start()
            )
        r = sync_redis(self.redis.url)
        wait_until(lambda: r.exists(self.queue + ":health-check"), 60, 0.2, self.procs)
        r.close()

    async def open(self, clients: int) -> None:
        from arq.connections import RedisSettings, create_pool

        assert self.redis
        self.pool = await create_pool(
            RedisSettings.from_dsn(self.redis.url), default_queue_name=self.queue
        )
        # arq's client waits for a result by polling; at latency 0 poll fast.
        self.poll = 0.02 if self.latency == 0 else 0.1

    async def close(self) -> None:
        await self.pool.aclose()

    async def call(self, i: int) -> Sample:
        s = Sample(time.time())
        try:
            job = await self.pool.enqueue_job("job", i)
            assert job is not None
            await job.result(timeout=REQUEST_TIMEOUT, poll_delay=self.poll)
            info = await job.result_info()
            s.ok, s.status, s.run_id = True, "ok", job.job_id
            if info:
                s.created_at = info.enqueue_time.timestamp()
                s.started_at = info.start_time.timestamp()
                s.finished_at = info.finish_time.timestamp()
        except Exception as exc:
            s.status = type(exc).__name__
        s.t_recv = time.time()
        return s


class CeleryThreads(System):
    name = "celery"

    def start(self) -> None:
        self.redis = start_local_redis()
        for i in range(self.n_workers):
            self.procs.append(
                celery_worker(f"worker-{i}", self.redis.url, self.concurrency, self.latency).start()
            )
        import os

        os.environ["BENCH_REDIS_URL"] = self.redis.url
        os.environ["BENCH_LATENCY"] = str(self.latency)
        import importlib

        from bench.peers import celery_peer

        self.module = importlib.reload(celery_peer)  # bind this Redis
        app = self.module.app
        wait_until(lambda: bool(app.control.ping(timeout=0.5)), 90, 0.5, self.procs)

    async def open(self, clients: int) -> None:
        self.executor = ThreadPoolExecutor(max_workers=max(clients, 8) + 4)

    async def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        # Celery's AsyncResult.__del__ unsubscribes from the result backend, retrying
        # (and blocking) once Redis is gone: collect them now, then make it a no-op.
        import gc

        gc.collect()
        backend = self.module.app.backend
        backend.result_consumer.cancel_for = lambda *a, **k: None
        backend.on_result_fulfilled = lambda *a, **k: None
        super().stop()

    def _call_sync(self, i: int) -> Sample:
        s = Sample(time.time())
        try:
            result = self.module.chat.apply_async(args=[f"q{i}"])
            body = result.get(timeout=REQUEST_TIMEOUT)
            s.ok, s.status, s.run_id = True, "ok", result.id
            s.created_at = s.t_send
            s.started_at, s.finished_at = body["started_at"], body["finished_at"]
        except Exception as exc:
            s.status = type(exc).__name__
        s.t_recv = time.time()
        return s

    async def call(self, i: int) -> Sample:
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._call_sync, i)


SYSTEMS: dict[str, type[System]] = {"langscale": Langscale, "celery": CeleryThreads, "arq": Arq}


# --------------------------------------------------------------------------------------
# load shapes
# --------------------------------------------------------------------------------------


async def closed_loop(
    call: Callable[[int], Awaitable[Sample]], clients: int, seconds: float, bar: tqdm
) -> list[Sample]:
    samples: list[Sample] = []
    end = time.time() + seconds
    counter = iter(range(10**9))

    async def client() -> None:
        while time.time() < end:
            s = await call(next(counter))
            samples.append(s)
            bar.update(1)

    await asyncio.gather(*(client() for _ in range(clients)))
    return samples


async def open_loop(
    call: Callable[[int], Awaitable[Sample]], rate: float, seconds: float, bar: tqdm, seed: int = 7
) -> tuple[list[Sample], int]:
    """Poisson arrivals at ``rate``/s for ``seconds``; returns samples and shed arrivals."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    tasks: set[asyncio.Task[None]] = set()
    shed = 0
    start = time.time()
    next_at = start
    i = 0

    async def one(n: int) -> None:
        s = await call(n)
        samples.append(s)
        bar.update(1)

    while True:
        next_at += rng.expovariate(rate)
        if next_at - start >= seconds:
            break
        delay = next_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= MAX_OUTSTANDING:
            shed += 1
            continue
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 10)
    return samples, shed


# --------------------------------------------------------------------------------------
# one measurement
# --------------------------------------------------------------------------------------


def summarize(
    system: System,
    samples: list[Sample],
    sampler: CpuSampler,
    w0: float,
    w1: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    window = w1 - w0
    done = [s for s in samples if w0 <= s.t_recv <= w1]
    ok = [s for s in done if s.ok]
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            errors[s.status] = errors.get(s.status, 0) + 1
    e2e = [s.t_recv - s.t_send for s in samples if s.ok and s.t_send >= w0]
    staged = [
        s
        for s in samples
        if s.ok and s.t_send >= w0 and s.finished_at and s.started_at and s.created_at
    ]
    throughput = len(ok) / window if window else 0.0
    cpu = {name: round(sampler.between(name, w0, w1), 3) for name in system.pids()}
    server = sum(v for k, v in cpu.items() if k != "redis")
    workers = sum(v for k, v in cpu.items() if k.startswith("worker"))
    out = {
        "system": system.name,
        "latency_s": system.latency,
        "concurrency": system.concurrency,
        "workers": system.n_workers,
        **extra,
        "window_s": round(window, 2),
        "completed": len(ok),
        "errors": errors,
        "runs_per_s": round(throughput, 1),
        "ideal_runs_per_s": (
            round(system.n_workers * system.concurrency / system.latency, 1)
            if system.latency
            else None
        ),
        "e2e": latency_summary(e2e),
        "stages_sampled": len(staged),
        "queued": latency_summary([s.started_at - s.created_at for s in staged]),  # type: ignore[operator]
        "running": latency_summary([s.finished_at - s.started_at for s in staged]),  # type: ignore[operator]
        "outside_queue": latency_summary(  # end-to-end minus created..finished
            [(s.t_recv - s.t_send) - (s.finished_at - s.created_at) for s in staged]  # type: ignore[operator]
        ),
        # split of outside_queue: before the run was created, after it finished
        "pre_enqueue": latency_summary([s.created_at - s.t_send for s in staged]),  # type: ignore[operator]
        "post_finish": latency_summary([s.t_recv - s.finished_at for s in staged]),  # type: ignore[operator]
        "cpu_s": cpu,
        "cpu_util": {k: round(v / window, 3) for k, v in cpu.items()} if window else {},
        "loadgen_cpu_util": round(sampler.between("_bench", w0, w1) / window, 3)
        if window
        else None,
        "foreign_cpus": sampler.foreign(w0, w1),
        "server_cpu_ms_per_run": round(1000 * server / len(ok), 3) if ok else None,
        "worker_cpu_ms_per_run": round(1000 * workers / len(ok), 3) if ok else None,
        "runs_per_server_cpu_s": round(len(ok) / server, 1) if server else None,
        "peak_rss_mb": {k: round(peak_rss_mb(p), 1) for k, p in system.pids().items()},
    }
    if out["ideal_runs_per_s"]:
        out["pct_of_ideal"] = round(100 * throughput / out["ideal_runs_per_s"], 1)
    return out


async def _measure(
    system: System, mode: str, level: float, seconds: float, warmup: float, label: str
) -> dict[str, Any]:
    clients = int(level) if mode == "closed" else min(MAX_OUTSTANDING, int(level * 2) + 50)
    await system.open(clients)
    try:
        with (
            CpuSampler(system.pids()) as sampler,
            tqdm(desc=label, unit="run", mininterval=1.0, leave=False, file=sys.stderr) as bar,
        ):
            t0 = time.time()
            extra: dict[str, Any] = {"mode": mode}
            if mode == "closed":
                samples = await closed_loop(system.call, clients, warmup + seconds, bar)
                extra["clients"] = clients
                w0, w1 = t0 + warmup, t0 + warmup + seconds
            else:
                samples, shed = await open_loop(system.call, level, warmup + seconds, bar)
                extra.update(offered_runs_per_s=level, shed=shed)
                w0, w1 = t0 + warmup, t0 + warmup + seconds
            # completions after the arrivals ended still count for latency, not throughput
        await system.stages(samples)
        return summarize(system, samples, sampler, w0, w1, extra)
    finally:
        await system.close()


def measure(
    system: System, mode: str, level: float, seconds: float, warmup: float = 1.0
) -> dict[str, Any]:
    label = (
        f"{system.name} L={system.latency:g} C={system.concurrency} W={system.n_workers} "
        f"{mode} {level:g}"
    )
    result = asyncio.run(_measure(system, mode, level, seconds, warmup, label))
    print(
        f"  {label}: {result['runs_per_s']} runs/s, e2e p50 {result['e2e']['p50_ms']} ms "
        f"p99 {result['e2e']['p99_ms']} ms, server CPU {result['server_cpu_ms_per_run']} "
        f"ms/run, errors {result['errors'] or 0}",
        flush=True,
    )
    return result


def run_baseline(latency: float, concurrency: int, runs: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.peers.baseline",
            "--runs",
            str(runs),
            "--concurrency",
            str(concurrency),
            "--latency",
            str(latency),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(RESULTS.parent.parent),
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["system"] = "baseline"
    data["workers"] = 1
    print(
        f"  baseline L={latency:g} C={concurrency}: {data['runs_per_s']} runs/s, "
        f"{data['cpu_ms_per_run']} CPU ms/run",
        flush=True,
    )
    return data


# --------------------------------------------------------------------------------------
# the suite
# --------------------------------------------------------------------------------------


@dataclass
class Plan:
    latencies: list[float]
    concurrencies: list[int]
    workers: list[int]
    systems: list[str]
    seconds: float
    sweep_fractions: list[float]
    sweep_seconds: float
    sweep_latency: float = 0.5
    sweep_concurrency: int = 100
    scenarios: list[dict[str, Any]] = field(default_factory=list)


def closed_clients(latency: float, concurrency: int, workers: int) -> int:
    """Enough clients to keep every worker slot busy (and a queue)."""
    if latency == 0:
        return min(64, 2 * concurrency * workers)
    return 2 * concurrency * workers


def run_suite(plan: Plan) -> dict[str, Any]:
    data: dict[str, Any] = {
        "machine": machine_info(),
        "git": git_state(),
        "closed": [],
        "baseline": [],
        "sweep": [],
    }
    for latency in plan.latencies:
        for c in plan.concurrencies:
            for w in plan.workers:
                clients = closed_clients(latency, c, w)
                print(
                    f"[loadgen] latency {latency:g} s, C={c}, {w} worker(s), "
                    f"{clients} clients, {plan.seconds:g} s",
                    flush=True,
                )
                for name in plan.systems:
                    wait_quiet(max_wait=45)
                    system = SYSTEMS[name](latency, c, w)
                    try:
                        system.start()
                        data["closed"].append(measure(system, "closed", clients, plan.seconds))
                        if (
                            name == "langscale"
                            and latency == plan.sweep_latency
                            and c == plan.sweep_concurrency
                            and w == 1
                            and plan.sweep_fractions
                        ):
                            sat = data["closed"][-1]["runs_per_s"] or c / max(latency, 1e-3)
                            for fraction in plan.sweep_fractions:
                                rate = round(fraction * sat, 1)
                                r = measure(system, "open", rate, plan.sweep_seconds)
                                r["fraction_of_saturation"] = fraction
                                r["saturation_runs_per_s"] = sat
                                data["sweep"].append(r)
                    except Exception as exc:
                        print(f"  {name} failed: {exc!r}", flush=True)
                        data["closed"].append(
                            {
                                "system": name,
                                "latency_s": latency,
                                "concurrency": c,
                                "workers": w,
                                "failed": repr(exc)[:500],
                            }
                        )
                    finally:
                        system.stop()
                if (w == 1 and "baseline" in plan.systems) or (w == 1 and plan.systems):
                    runs = int(min(4000, max(500, (c / latency if latency else 400) * 6)))
                    try:
                        data["baseline"].append(run_baseline(latency, c, runs))
                    except Exception as exc:
                        print(f"  baseline failed: {exc!r}", flush=True)
    return data


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and "failed" not in r:
            return r
    return None


def targets(data: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    closed = data["closed"]
    for c in sorted({r["concurrency"] for r in closed}):
        for w in sorted({r["workers"] for r in closed}):
            ls0 = _find(closed, system="langscale", latency_s=0.0, concurrency=c, workers=w)
            ce0 = _find(closed, system="celery", latency_s=0.0, concurrency=c, workers=w)
            aq0 = _find(closed, system="arq", latency_s=0.0, concurrency=c, workers=w)
            if ls0 and ce0 and ce0["runs_per_server_cpu_s"]:
                ratio = ls0["runs_per_server_cpu_s"] / ce0["runs_per_server_cpu_s"]
                rows.append(
                    [
                        f"L=0 C={c} W={w}: runs per server CPU s, langscale (gateway+"
                        f"worker) / celery (worker)",
                        "≥ 2×",
                        f"{ls0['runs_per_server_cpu_s']} / {ce0['runs_per_server_cpu_s']}"
                        f" = {ratio:.2f}×",
                        "yes" if ratio >= 2 else "no",
                    ]
                )
            if ls0 and aq0 and aq0["worker_cpu_ms_per_run"]:
                ratio = ls0["worker_cpu_ms_per_run"] / aq0["worker_cpu_ms_per_run"]
                rows.append(
                    [
                        f"L=0 C={c} W={w}: worker CPU ms/run, langscale / arq",
                        "≤ 2×",
                        f"{ls0['worker_cpu_ms_per_run']} / {aq0['worker_cpu_ms_per_run']}"
                        f" = {ratio:.2f}×",
                        "yes" if ratio <= 2 else "no",
                    ]
                )
            for latency in sorted({r["latency_s"] for r in closed if r["latency_s"]}):
                ls = _find(closed, system="langscale", latency_s=latency, concurrency=c, workers=w)
                if ls and ls.get("pct_of_ideal") is not None:
                    util = max(
                        (v for k, v in ls["cpu_util"].items() if k.startswith("worker")), default=0
                    )
                    rows.append(
                        [
                            f"L={latency:g} C={c} W={w}: % of ideal {ls['ideal_runs_per_s']:g}"
                            f" runs/s (worker CPU util {util:.2f})",
                            "≥ 90% until CPU-bound",
                            f"{ls['pct_of_ideal']}%",
                            "yes"
                            if ls["pct_of_ideal"] >= 90
                            else ("no (CPU-bound)" if util > 0.85 else "no"),
                        ]
                    )
    half = next((r for r in data["sweep"] if r.get("fraction_of_saturation") == 0.5), None)
    if half:
        p99 = half["outside_queue"]["p99_ms"]
        rows.append(
            [
                f"gateway-added p99 at half saturation ({half['offered_runs_per_s']:g} "
                f"runs/s, L={half['latency_s']:g})",
                "< 10 ms",
                f"{p99} ms",
                "yes" if p99 is not None and p99 < 10 else "no",
            ]
        )
    return rows


def markdown(data: dict[str, Any], command: str) -> str:
    text = f"# Load generator (issue 8)\n\nCommand: `{command}`  \n"
    m = data["machine"]
    git = data["git"]
    text += (
        f"{m['cpus']} CPUs, load at start {m['loadavg_at_start']}, git {git['head']} "
        f"+ {len(git['modified_src'])} modified files under src/ and services/, "
        f"HTTP client {data.get('http_client')}.\n\n"
    )
    text += "## Closed loop, all systems\n\n"
    rows = []
    for r in data["closed"]:
        if "failed" in r:
            rows.append(
                [r["system"], r["latency_s"], r["concurrency"], r["workers"], "failed"] + [None] * 9
            )
            continue
        peer_ls = _find(
            data["closed"],
            system="langscale",
            latency_s=r["latency_s"],
            concurrency=r["concurrency"],
            workers=r["workers"],
        )
        ratio = (
            round(peer_ls["runs_per_s"] / r["runs_per_s"], 2)
            if peer_ls and r["runs_per_s"] and r["system"] != "langscale"
            else None
        )
        rows.append(
            [
                r["system"],
                r["latency_s"],
                r["concurrency"],
                r["workers"],
                r["clients"],
                r["runs_per_s"],
                r.get("pct_of_ideal"),
                ratio,
                r["e2e"]["p50_ms"],
                r["e2e"]["p99_ms"],
                r["server_cpu_ms_per_run"],
                r["worker_cpu_ms_per_run"],
                sum(n for n in r["errors"].values()),
                r["foreign_cpus"],
            ]
        )
    text += md_table(
        [
            "system",
            "latency s",
            "C",
            "workers",
            "clients",
            "runs/s",
            "% ideal",
            "langscale/peer",
            "e2e p50 ms",
            "e2e p99 ms",
            "server CPU ms/run",
            "worker CPU ms/run",
            "errors",
            "other load",
        ],
        rows,
    )
    if data["baseline"]:
        text += "\n## No-queue baseline (asyncio.gather of chain.ainvoke, one process)\n\n"
        text += md_table(
            ["latency s", "C", "runs", "runs/s", "CPU ms/run", "p50 ms", "p99 ms"],
            [
                [
                    b["latency_s"],
                    b["concurrency"],
                    b["runs"],
                    b["runs_per_s"],
                    b["cpu_ms_per_run"],
                    b["p50_ms"],
                    b["p99_ms"],
                ]
                for b in data["baseline"]
            ],
        )
    if data["sweep"]:
        text += "\n## Open loop, langscale (latency vs offered load)\n\n"
        text += md_table(
            [
                "offered/s",
                "× sat.",
                "runs/s",
                "e2e p50",
                "e2e p90",
                "e2e p99",
                "queued p50",
                "queued p99",
                "running p50",
                "gateway-added p50",
                "gateway-added p99",
                "errors",
                "other load",
            ],
            [
                [
                    r["offered_runs_per_s"],
                    r["fraction_of_saturation"],
                    r["runs_per_s"],
                    r["e2e"]["p50_ms"],
                    r["e2e"]["p90_ms"],
                    r["e2e"]["p99_ms"],
                    r["queued"]["p50_ms"],
                    r["queued"]["p99_ms"],
                    r["running"]["p50_ms"],
                    r["outside_queue"]["p50_ms"],
                    r["outside_queue"]["p99_ms"],
                    sum(r["errors"].values()),
                    r["foreign_cpus"],
                ]
                for r in data["sweep"]
            ],
        )
        text += "\n![latency vs offered load](loadgen_latency.png)\n"
    text += "\n## Targets\n\n" + md_table(["target", "goal", "measured", "met"], targets(data))
    text += (
        "\nServer CPU = gateway + workers (langscale) or workers (peers), Redis excluded. "
        "gateway-added = end-to-end − (finished_at − created_at). `other load` = CPUs used "
        "by processes outside the benchmark (shared machine).\n"
    )
    return text


def plot(data: dict[str, Any]) -> str | None:
    if not data["sweep"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(data["sweep"], key=lambda r: r["offered_runs_per_s"])
    x = [r["offered_runs_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, style in (("p50_ms", "o-"), ("p90_ms", "s-"), ("p99_ms", "^-")):
        ax.plot(x, [r["e2e"][key] for r in rows], style, label=f"end-to-end {key[:3]}")
    ax.plot(x, [r["queued"]["p99_ms"] for r in rows], "x--", label="queued p99")
    ax.set_xlabel("offered load, runs/s (open loop, Poisson)")
    ax.set_ylabel("latency, ms")
    ax.set_yscale("log")
    sat = rows[0]["saturation_runs_per_s"]
    ax.axvline(sat, color="grey", linestyle=":", label=f"closed-loop saturation {sat:g}/s")
    ax.set_title(
        f"langscale via gateway: fake latency {rows[0]['latency_s']:g} s, "
        f"C={rows[0]['concurrency']}, 1 worker"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(x, [r["runs_per_s"] for r in rows], "k.:", label="achieved runs/s")
    ax2.set_ylabel("achieved runs/s")
    fig.tight_layout()
    path = RESULTS / "loadgen_latency.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench loadgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases, fewer sweep rates")
    parser.add_argument(
        "--full", action="store_true", help="C in (10, 100, 500) × 1 and 2 worker processes"
    )
    parser.add_argument(
        "--systems", nargs="+", default=["langscale", "celery", "arq"], choices=sorted(SYSTEMS)
    )
    parser.add_argument("--latency", type=float, nargs="+", default=None)
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=None)
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--name", default="loadgen", help="results file stem")
    parser.add_argument(
        "--http-client",
        choices=["raw", "httpx"],
        default="raw",
        help="client for the load (raw: minimal HTTP/1.1, see RawHTTP)",
    )
    args = parser.parse_args(argv)
    Langscale.http_client = args.http_client
    plan = Plan(
        latencies=args.latency or [0.0, 0.5],
        concurrencies=args.concurrency or ([10, 100, 500] if args.full else [100]),
        workers=args.workers or ([1, 2] if args.full else [1]),
        systems=args.systems,
        seconds=args.seconds or (4.0 if args.quick else 8.0),
        sweep_fractions=[]
        if args.no_sweep
        else ([0.25, 0.5, 1.1] if args.quick else [0.25, 0.5, 0.75, 0.9, 1.1]),
        sweep_seconds=3.0 if args.quick else 6.0,
    )
    command = "python -m bench loadgen " + " ".join(argv if argv is not None else sys.argv[1:])
    data = run_suite(plan)
    if args.no_baseline:
        data["baseline"] = []
    data["command"] = command
    data["http_client"] = args.http_client
    data["plot"] = plot(data)
    text = markdown(data, command)
    json_path, md_path = write_results(args.name, data, text)
    print(text)
    print(f"wrote {json_path} and {md_path}" + (f" and {data['plot']}" if data["plot"] else ""))
    return data


if __name__ == "__main__":
    main()
