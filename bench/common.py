"""Shared helpers for the benchmarks: processes, /proc accounting, Redis, results.

Everything runs on loopback against private ``redis-server`` instances started with
:func:`langscale.localredis.start_local_redis` (never the machine's Redis on 6379).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_DIR = Path(tempfile.mkdtemp(prefix="langscale-bench-"))


# --------------------------------------------------------------------------------------
# /proc accounting
# --------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found.extend(int(x) for x in fh.read().split())
    except OSError:
        pass
    return found


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        current = todo.pop()
        out.append(current)
        todo.extend(_children(current))
    return out


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """utime + stime of a process (and its live descendants), in seconds."""
    total = 0
    for p in _tree(pid) if tree else [pid]:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def peak_rss_mb(pid: int, tree: bool = True) -> float:
    """VmHWM (peak resident set) of a process (summed over its descendants), MiB."""
    total = 0
    for p in _tree(pid) if tree else [pid]:
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def system_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (busy, all CPUs), /proc/stat."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_quiet(max_wait: float = 20.0, threshold: float = 0.3, interval: float = 1.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine uses less than ``threshold`` CPUs;
    the machine is shared, so a scenario should not start in someone else's burst.
    Returns the last measured busy CPUs."""
    deadline = time.monotonic() + max_wait
    while True:
        b0 = system_busy_seconds()
        time.sleep(interval)
        busy = (system_busy_seconds() - b0) / interval
        if busy < threshold or time.monotonic() > deadline:
            return round(busy, 2)


class CpuSampler:
    """Samples cpu_seconds of some processes every ``interval`` in a thread, so CPU in any
    time window can be interpolated afterwards."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2, max_seconds: float = 600):
        self.pids = pids
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        sample = {k: cpu_seconds(p) for k, p in self.pids.items()}
        sample["_bench"] = cpu_seconds(os.getpid(), tree=False)
        sample["_system"] = system_busy_seconds()
        self.samples.append((time.time(), sample))

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def at(self, name: str, when: float) -> float:
        pts = [(t, s[name]) for t, s in self.samples]
        if not pts:
            return 0.0
        if when <= pts[0][0]:
            return pts[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(pts):
            if t0 <= when <= t1:
                return v0 + (v1 - v0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0)
        return pts[-1][1]

    def between(self, name: str, start: float, end: float) -> float:
        return self.at(name, end) - self.at(name, start)

    def foreign(self, start: float, end: float) -> float:
        """CPUs used by processes outside this benchmark (other users of the machine)
        between start and end: all busy time minus our processes' and the driver's."""
        ours = sum(self.between(k, start, end) for k in self.pids) + self.between(
            "_bench", start, end
        )
        span = end - start
        return (
            round(max(0.0, self.between("_system", start, end) - ours) / span, 2) if span else 0.0
        )


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return LOG_DIR / f"{self.name}.log"

    def start(self) -> Proc:
        with self.log.open("ab") as fh:
            self.popen = subprocess.Popen(
                self.args, env=self.env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def base_env(**extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSCALE_", "BENCH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for key, value in extra.items():
        env[key] = str(value)
    return env


def langscale_env(redis_url: str, **settings: Any) -> dict[str, str]:
    env = base_env(
        LANGSCALE_REDIS_URL=redis_url,
        LANGSCALE_LOG_LEVEL="WARNING",
        LANGSCALE_LOG_FORMAT="json",
    )
    for name, value in settings.items():
        env[f"LANGSCALE_{name.upper()}"] = str(value)
    return env


def langscale_worker(name: str, redis_url: str, **settings: Any) -> Proc:
    return Proc(
        name,
        [sys.executable, "-m", "langscale.cli", "worker"],
        langscale_env(redis_url, **settings),
    )


def langscale_gateway(name: str, redis_url: str, port: int, **settings: Any) -> Proc:
    return Proc(
        name,
        [sys.executable, "-m", "langscale.cli", "gateway", "--port", str(port)],
        langscale_env(redis_url, **settings),
    )


def arq_worker(name: str, redis_url: str, max_jobs: int, latency: float, queue: str) -> Proc:
    return Proc(
        name,
        [sys.executable, "-m", "bench.peers.arq_peer"],
        base_env(
            BENCH_REDIS_URL=redis_url,
            BENCH_MAX_JOBS=max_jobs,
            BENCH_LATENCY=latency,
            BENCH_QUEUE=queue,
        ),
    )


def celery_worker(name: str, redis_url: str, concurrency: int, latency: float) -> Proc:
    return Proc(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.peers.celery_peer",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            "bench",
            "-n",
            f"{name}@%h",
        ],
        base_env(BENCH_REDIS_URL=redis_url, BENCH_LATENCY=latency),
    )


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, procs: Iterable[Proc] = ()
) -> Any:
    deadline = time.monotonic() + timeout
    procs = list(procs)
    while True:
        for proc in procs:
            proc.check()
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


def sync_redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


# --------------------------------------------------------------------------------------
# statistics and results
# --------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in milliseconds."""
    out: dict[str, float | None] = {}
    for q in (50, 90, 99):
        v = percentile(values, q)
        out[f"p{q}_ms"] = None if v is None else round(v * 1000, 2)
    out["max_ms"] = round(max(values) * 1000, 2) if values else None
    return out


def machine_info() -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    import arq
    import celery
    import redis

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "arq": arq.VERSION,
        "redis_py": redis.__version__,
        "celery": celery.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def git_state() -> dict[str, Any]:
    """HEAD and the files modified in the work tree (read-only git commands)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [
        line[3:]
        for line in git("status", "--porcelain").splitlines()
        if line[3:].startswith(("src/", "services/"))
    ]
    return {"head": git("rev-parse", "--short", "HEAD"), "modified_src": dirty}


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{name}.json"
    md_path = RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def run_store(redis: Any, redis_url: str) -> Any:
    """The gateway's RunStore on ``redis``, with default settings (one partition)."""
    from langscale.lifecycle import LifecycleConfig, RunStore
    from langscale.settings import Settings

    return RunStore(redis, LifecycleConfig.from_settings(Settings(redis_url=redis_url)))


async def enqueue_runs(store: Any, pipeline: str, inputs: list[Any]) -> list[str]:
    """Queue runs as the gateway does (no admission limit in the way), 500 per call."""
    from langscale.contract import JobSpec

    ids: list[str] = []
    for start in range(0, len(inputs), 500):
        chunk = inputs[start : start + 500]
        run_ids = store.new_run_ids(len(chunk), store.partition_for("bench"))
        specs = [
            JobSpec(run_id=r, pipeline=pipeline, input=v)
            for r, v in zip(run_ids, chunk, strict=True)
        ]
        submitted = await store.submit(specs)
        if submitted.outcome != "queued":
            raise RuntimeError(f"enqueue refused: {submitted}")
        ids.extend(run_ids)
    return ids
