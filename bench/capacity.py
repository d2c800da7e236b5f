"""The capacity table an SRE plans with, from measured figures (docs/capacity.md).

``python -m bench.capacity`` reads ``results/memory.json`` (``python -m bench memory``) and,
if present, ``results/ceiling.json`` (``python -m bench ceiling``), and writes
``results/capacity.md``:

- Redis memory (one copy of the data, GB) for runs/day × how long results are kept, for
  runs nobody streamed and for streamed runs (their stream kept ``LANGSCALE_STREAM_TTL``);
- Redis cores for a rate of runs/s, and the masters a cluster needs at a target
  utilisation; worker and gateway cores likewise.

Arithmetic only: the inputs are the measured bytes per run and CPU ms per run.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from bench.common import RESULTS, md_table

RUNS_PER_DAY = [1_000_000, 10_000_000, 100_000_000, 1_000_000_000]
RESULT_TTLS = [("1 h", 3_600), ("24 h (default)", 86_400), ("7 d", 7 * 86_400)]
STREAM_TTL = 3_600  # LANGSCALE_STREAM_TTL default
RATES = [100, 1_000, 5_000, 20_000, 100_000]
UTILISATION = 0.6  # keep a Redis core (and a process) at most this busy


def _gb(value: float) -> str:
    return f"{value:,.1f}" if value >= 1 else f"{value:.2f}"


def memory_table(memory: dict[str, Any]) -> str:
    plain, streamed = memory["langscale"][0], memory["langscale"][1]
    hash_bytes = plain["used_memory_per_run_bytes"]
    # A streamed run's hash is about an unstreamed one's; the rest is its stream.
    stream_bytes = max(0.0, streamed["used_memory_per_run_bytes"] - hash_bytes)
    rows = []
    for per_day in RUNS_PER_DAY:
        row: list[Any] = [f"{per_day:,}"]
        for _, ttl in RESULT_TTLS:
            kept = per_day * ttl / 86_400
            row.append(_gb(kept * hash_bytes / 1e9))
        kept_streams = per_day * STREAM_TTL / 86_400
        row.append(_gb(kept_streams * stream_bytes / 1e9))
        rows.append(row)
    text = (
        f"Measured: {hash_bytes:g} B per finished run nobody streamed, {stream_bytes:g} B "
        f"more per streamed run while its stream is kept (`python -m bench memory`, "
        f'built-in chat, output "You said: f"). Bigger inputs and outputs add their '
        "own bytes (a 2 KB output: +2 KB per run).\n\n"
    )
    text += md_table(
        ["runs/day"]
        + [f"GB, results kept {name}" for name, _ in RESULT_TTLS]
        + ["+ GB if every run is streamed (streams kept 1 h)"],
        rows,
    )
    text += (
        "\nOne copy of the data. Provision more: each replica holds a copy; leave "
        "room for the fork of an AOF rewrite or snapshot (up to the data again, written "
        "pages) and for fragmentation, i.e. `maxmemory` ≈ 50–60% of a node's RAM. A cluster "
        "of m masters holds 1/m of it per master (partitions spread evenly).\n"
    )
    return text


def cpu_table(ceiling: dict[str, Any]) -> str:
    rows_in = [r for r in ceiling["rows"] if "failed" not in r]
    single = [r for r in rows_in if r["redis"] == "single"]
    cluster = [r for r in rows_in if r["redis"] == "cluster"]
    if not single:
        return ""
    best = max(single, key=lambda r: r["runs_per_s"])
    ms = best["cpu_ms_per_run"]
    redis_ms, worker_ms, gateway_ms = ms["redis_masters"], ms["workers"], ms["gateways"]
    per_core = 1000 / redis_ms
    text = (
        f"Measured at LLM latency 0 (`python -m bench ceiling`, one Redis, "
        f"{best['workers']} workers × {best['gateways']} gateways, {best['runs_per_s']:g} "
        f"runs/s): Redis {redis_ms:.3f} ms, workers {worker_ms:.2f} ms, gateways "
        f"{gateway_ms:.2f} ms of CPU per run, {best['redis_commands_per_run']:g} Redis "
        f"commands per run. So one Redis core serves ≈ {per_core:,.0f} runs/s, a worker core "
        f"≈ {1000 / worker_ms:,.0f}, a gateway core ≈ {1000 / gateway_ms:,.0f} (at LLM "
        f"latency 0; real LLM latency adds waiting, not CPU).\n\n"
    )
    if cluster:
        fastest = max(cluster, key=lambda r: r["runs_per_s"])
        text += (
            f"On the 3-master cluster here: {fastest['runs_per_s']:g} runs/s with "
            f"{fastest['workers']} workers × {fastest['gateways']} gateways, Redis masters "
            f"{fastest['cpu_ms_per_run']['redis_masters']:.3f} ms per run in all.\n\n"
        )
    rows = []
    for rate in RATES:
        redis_cores = rate * redis_ms / 1000
        masters = max(1, math.ceil(redis_cores / UTILISATION))
        rows.append(
            [
                f"{rate:,}",
                f"{redis_cores:.2f}",
                "one Redis" if masters == 1 else f"cluster, ≥ {masters} masters",
                f"{rate * worker_ms / 1000 / UTILISATION:,.1f}",
                f"{rate * gateway_ms / 1000 / UTILISATION:,.1f}",
            ]
        )
    text += md_table(
        [
            "runs/s",
            "Redis cores busy",
            f"Redis (≤ {UTILISATION:.0%} of a core each)",
            f"worker cores (≤ {UTILISATION:.0%} busy)",
            f"gateway cores (≤ {UTILISATION:.0%} busy)",
        ],
        rows,
    )
    text += (
        "\nA Redis executes commands on one core, so past ~60% of one core a deployment "
        "needs a cluster; a cluster's throughput grows with its masters as long as the "
        "partitions spread evenly (LANGSCALE_REDIS_PARTITIONS ≥ 4 per master).\n"
    )
    return text


def write() -> str:
    memory_path = RESULTS / "memory.json"
    ceiling_path = RESULTS / "ceiling.json"
    text = "# Capacity (issue 16)\n\nFrom `bench/results/memory.json`"
    text += " and `ceiling.json`" if ceiling_path.exists() else ""
    text += " (`python -m bench.capacity`).\n\n## Memory\n\n"
    text += memory_table(json.loads(memory_path.read_text()))
    if ceiling_path.exists():
        text += "\n## CPU\n\n" + cpu_table(json.loads(ceiling_path.read_text()))
    (RESULTS / "capacity.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.stdout.write(write())
