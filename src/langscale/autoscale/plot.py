"""PNG of one simulation: arrivals/s, ready queue depth, replicas, p95 time in queue."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from .simulate import SimResult


def _bin_seconds(duration: float, dt: float) -> float:
    """About 600 bins, at least 1 s, a whole number of steps."""
    raw = max(1.0, duration / 600)
    return max(dt, round(raw / dt) * dt)


def binned(res: SimResult) -> dict[str, npt.NDArray[np.float64]]:
    """Per-bin series: bin start, arrivals/s, mean ready depth, mean/peak pods, p95 queue time."""
    dt = res.dt
    n_steps = len(res.pods_total)
    duration = n_steps * dt
    width = _bin_seconds(duration, dt)
    per = max(1, round(width / dt))
    n_bins = math.ceil(n_steps / per)
    pad = n_bins * per - n_steps

    def mean_of(a: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        x = np.concatenate([a.astype(np.float64), np.full(pad, np.nan)])
        return np.asarray(np.nanmean(x.reshape(n_bins, per), axis=1), dtype=np.float64)

    def max_of(a: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        x = np.concatenate([a.astype(np.float64), np.full(pad, -np.inf)])
        return np.asarray(x.reshape(n_bins, per).max(axis=1), dtype=np.float64)

    edges = np.arange(n_bins + 1, dtype=np.float64) * per * dt
    counts, _ = np.histogram(res.arrivals, bins=edges)
    widths = np.minimum(edges[1:], duration) - edges[:-1]
    bounds = np.searchsorted(res.arrivals, edges)
    p95 = np.full(n_bins, np.nan)
    for i in range(n_bins):
        a, b = bounds[i], bounds[i + 1]
        if b > a:
            p95[i] = np.percentile(res.queue_times[a:b], 95)
    return {
        "t": edges[:-1],
        "arrivals_per_s": counts / widths,
        "ready_depth": mean_of(res.queue_ready),
        "ready_depth_max": max_of(res.queue_ready),
        "pods_total": max_of(res.pods_total),
        "pods_ready": mean_of(res.pods_ready),
        "pods_spec": max_of(res.pods_spec),
        "p95_queue_seconds": p95,
    }


def plot(res: SimResult, path: str | Path, title: str | None = None) -> Path:
    b = binned(res)
    duration = len(res.pods_total) * res.dt
    minutes = duration > 900
    x = b["t"] / 60 if minutes else b["t"]
    s = res.summary
    cfg = res.config
    fig, axes = plt.subplots(4, 1, sharex=True, figsize=(11, 10), constrained_layout=True)
    ax = axes[0]
    ax.plot(x, b["arrivals_per_s"], color="tab:blue", lw=1)
    ax.set_ylabel("arrivals / s")
    ax = axes[1]
    ax.plot(x, b["ready_depth_max"], color="tab:orange", lw=0.8, alpha=0.5, label="peak")
    ax.plot(x, b["ready_depth"], color="tab:orange", lw=1.2, label="mean")
    ax.set_ylabel("ready queue depth")
    ax.legend(loc="upper right", fontsize="small")
    ax = axes[2]
    ax.step(x, b["pods_total"], where="post", color="tab:gray", lw=1, label="pods (incl. draining)")
    ax.step(x, b["pods_spec"], where="post", color="tab:green", lw=1.2, label="replicas (spec)")
    ax.plot(x, b["pods_ready"], color="tab:purple", lw=1, ls="--", label="ready pods")
    v = cfg.values
    if v.enabled:
        ax.axhline(v.max_replicas, color="tab:red", lw=0.6, ls=":", label="maxReplicas")
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize="small")
    ax = axes[3]
    ax.plot(x, b["p95_queue_seconds"], color="tab:red", lw=1)
    ax.axhline(cfg.slo_queue_seconds, color="black", lw=0.6, ls="--", label="SLO")
    ax.set_ylabel("p95 time in queue (s)\nby arrival time")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel("minutes" if minutes else "seconds")
    q = s["queue_time_seconds"]
    kind = v.kind.upper() if v.enabled else "fixed replicas"
    fig.suptitle(
        title
        or (
            f"{cfg.pattern.kind} load, {kind} on {v.metric}, "
            f"target {v.target_per_replica:g}/replica "
            f"(concurrency {v.concurrency} x {v.target_utilization:g}) - "
            f"p95 queue {q['p95']:.2f}s, {s['replica_minutes']:.0f} replica-min"
        ),
        fontsize="medium",
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
