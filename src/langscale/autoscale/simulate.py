"""Wire arrivals, the fleet and the autoscaler into one deterministic simulation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from . import arrivals as arrivals_mod
from .fleet import Fleet
from .hpa import DEFAULT_SYNC_PERIOD_SECONDS, DEFAULT_TOLERANCE, HorizontalPodAutoscaler
from .keda import KedaScaledObject
from .values import AutoscalingValues

FloatArray = npt.NDArray[np.float64]


class SimulationError(ValueError):
    """Parameters that cannot be simulated."""


@dataclass(frozen=True)
class RunTime:
    """Run time of one job: fixed, lognormal with a median and a sigma (of the log), or
    each run's own, recorded in the arrivals CSV's second column."""

    kind: str = "fixed"  # fixed | lognormal | csv
    median: float = 1.0
    sigma: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> RunTime:
        """``2`` / ``fixed:2`` / ``lognormal:2,0.5`` (median seconds, sigma) / ``csv``."""
        s = spec.strip()
        if s == "csv":
            return cls("csv")
        try:
            if s.startswith("lognormal:"):
                median_s, sigma_s = s.split(":", 1)[1].split(",")
                rt = cls("lognormal", float(median_s), float(sigma_s))
            else:
                rt = cls("fixed", float(s.removeprefix("fixed:")), 0.0)
        except ValueError:
            raise SimulationError(
                f"bad run time {spec!r}: use SECONDS, fixed:SECONDS, lognormal:MEDIAN,SIGMA or csv"
            ) from None
        if not rt.median > 0 or rt.sigma < 0 or not math.isfinite(rt.median + rt.sigma):
            raise SimulationError(f"bad run time {spec!r}: need median > 0 and sigma >= 0")
        return rt

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        if self.kind == "lognormal" and self.sigma > 0:
            return self.median * np.exp(self.sigma * rng.standard_normal(n))
        return np.full(n, self.median)

    def describe(self) -> str:
        if self.kind == "csv":
            return "recorded per run (CSV second column)"
        if self.kind == "lognormal":
            return f"lognormal(median={self.median:g}s, sigma={self.sigma:g})"
        return f"fixed {self.median:g}s"


@dataclass(frozen=True)
class SimConfig:
    values: AutoscalingValues
    pattern: arrivals_mod.Pattern = field(default_factory=arrivals_mod.Pattern)
    duration: float = 3600.0
    run_time: RunTime = field(default_factory=RunTime)
    startup_seconds: float = 30.0
    metric_lag_seconds: float | None = None  # None: 15 (0 for KEDA's metrics-api trigger)
    sync_period_seconds: float = DEFAULT_SYNC_PERIOD_SECONDS
    tolerance: float = DEFAULT_TOLERANCE
    dt: float = 0.1
    seed: int = 0
    process: str = "poisson"
    slo_queue_seconds: float = 5.0
    initial_replicas: int | None = None  # None: minReplicas (KEDA min 0: 0)

    @property
    def effective_metric_lag(self) -> float:
        if self.metric_lag_seconds is not None:
            return self.metric_lag_seconds
        if self.values.kind == "keda" and self.values.keda_trigger == "metrics-api":
            return 0.0  # KEDA asks the gateway at each poll / HPA query
        return 15.0  # Prometheus scrape interval behind prometheus-adapter

    def with_target(self, target_utilization: float) -> SimConfig:
        return replace(self, values=replace(self.values, target_utilization=target_utilization))


@dataclass
class SimResult:
    config: SimConfig
    dt: float
    arrivals: FloatArray
    queue_times: FloatArray  # per run; unstarted runs: their age at the end
    started: npt.NDArray[np.bool_]
    queue_ready: npt.NDArray[np.int64]
    in_progress: npt.NDArray[np.int64]
    pods_total: npt.NDArray[np.int64]
    pods_ready: npt.NDArray[np.int64]
    pods_spec: npt.NDArray[np.int64]
    scale_events: list[tuple[float, int, int]]  # (time, from, to)
    summary: dict[str, Any]


def _validate(cfg: SimConfig) -> None:
    if cfg.duration <= 0:
        raise SimulationError("duration must be positive")
    if not 0.001 <= cfg.dt <= 5:
        raise SimulationError("dt must be between 0.001 and 5 seconds")
    if cfg.sync_period_seconds <= 0:
        raise SimulationError("sync period must be positive")
    if cfg.startup_seconds < 0 or cfg.effective_metric_lag < 0:
        raise SimulationError("startup delay and metric lag must not be negative")
    if cfg.tolerance < 0:
        raise SimulationError("tolerance must not be negative")
    if cfg.slo_queue_seconds < 0:
        raise SimulationError("SLO must not be negative")


def run(cfg: SimConfig) -> SimResult:
    """Simulate ``cfg.duration`` seconds. Deterministic for a given seed."""
    _validate(cfg)
    v = cfg.values
    # Independent streams: the same seed gives the same arrivals and run times whatever the
    # autoscaling settings, so a sweep compares settings on identical traffic.
    seq = np.random.SeedSequence(cfg.seed)
    rng_arrivals, rng_runs, rng_fleet = (np.random.default_rng(s) for s in seq.spawn(3))
    arr = arrivals_mod.generate(cfg.pattern, cfg.duration, rng_arrivals, cfg.process)
    if cfg.run_time.kind == "csv":
        run_times = arrivals_mod.recorded_run_times(cfg.pattern)[: len(arr)]
    else:
        run_times = cfg.run_time.sample(len(arr), rng_runs)
    if v.job_timeout_seconds > 0:
        run_times = np.minimum(run_times, v.job_timeout_seconds)

    dt = cfg.dt
    n_steps = math.ceil(round(cfg.duration / dt, 9))
    if cfg.initial_replicas is not None:
        initial = cfg.initial_replicas
    elif not v.enabled:
        initial = v.replica_count
    else:
        initial = v.min_replicas
    fleet = Fleet(
        arr,
        run_times,
        concurrency=v.concurrency,
        dt=dt,
        n_steps=n_steps,
        startup_seconds=cfg.startup_seconds,
        initial_replicas=initial,
        rng=rng_fleet,
    )

    hpa: HorizontalPodAutoscaler | None = None
    keda: KedaScaledObject | None = None
    if v.enabled and v.kind == "hpa":
        hpa = HorizontalPodAutoscaler(
            min_replicas=v.min_replicas,
            max_replicas=v.max_replicas,
            target_average_value=v.target_per_replica,
            behavior=v.behavior,
            tolerance=cfg.tolerance,
        )
    elif v.enabled:
        keda = KedaScaledObject(
            min_replica_count=v.min_replicas,
            max_replica_count=v.max_replicas,
            target_value=v.target_per_replica,
            behavior=v.behavior,
            polling_interval=v.keda_polling_interval,
            cooldown_period=v.keda_cooldown_period,
            tolerance=cfg.tolerance,
        )

    def every(seconds: float) -> int:
        return max(1, round(seconds / dt))

    sync_every = every(cfg.sync_period_seconds)
    poll_every = every(v.keda_polling_interval)
    lag_steps = round(cfg.effective_metric_lag / dt)
    metric_is_backlog = v.metric == "backlog"
    scale_events: list[tuple[float, int, int]] = []

    def observed(k: int) -> float:
        j = max(0, k - lag_steps)
        ready = int(fleet.queue_ready[j])
        return float(ready + fleet.in_progress[j]) if metric_is_backlog else float(ready)

    def apply(k: int, desired: int) -> None:
        current = fleet.spec_replicas
        if desired != current:
            scale_events.append((round(k * dt, 6), current, desired))
            fleet.set_replicas(k, desired)

    for k in range(n_steps):
        fleet.advance(k)
        if keda is not None:
            if k % poll_every == 0:
                apply(k, keda.poll(k * dt, observed(k), fleet.spec_replicas))
            if k % sync_every == 0:
                apply(k, keda.hpa_step(k * dt, observed(k), fleet.spec_replicas))
        elif hpa is not None and k % sync_every == 0:
            apply(k, hpa.step(k * dt, observed(k), fleet.spec_replicas))

    end = n_steps * dt
    started = ~np.isnan(fleet.start)
    queue_times = np.where(started, fleet.start - arr, end - arr)
    queue_times = np.maximum(queue_times, 0.0)
    result = SimResult(
        config=cfg,
        dt=dt,
        arrivals=arr,
        queue_times=queue_times,
        started=started,
        queue_ready=fleet.queue_ready,
        in_progress=fleet.in_progress,
        pods_total=fleet.pods_total,
        pods_ready=fleet.pods_ready,
        pods_spec=fleet.pods_spec,
        scale_events=scale_events,
        summary={},
    )
    result.summary = summarize(result, run_times)
    return result


def _pct(a: FloatArray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else 0.0


def summarize(res: SimResult, run_times: FloatArray | None = None) -> dict[str, Any]:
    cfg = res.config
    v = cfg.values
    qt = res.queue_times
    n = len(qt)
    dt = res.dt
    end = len(res.pods_total) * dt
    replica_seconds = float(res.pods_total.sum()) * dt
    if run_times is not None and n:
        completed = int(np.count_nonzero(res.started & (qt + res.arrivals + run_times <= end)))
    else:
        completed = int(np.count_nonzero(res.started))
    return {
        "runs": n,
        "runs_started": int(np.count_nonzero(res.started)),
        "runs_completed": completed,
        "runs_still_queued": int(n - np.count_nonzero(res.started)),
        "queue_time_seconds": {
            "p50": round(_pct(qt, 50), 3),
            "p95": round(_pct(qt, 95), 3),
            "p99": round(_pct(qt, 99), 3),
            "max": round(float(qt.max()) if n else 0.0, 3),
            "mean": round(float(qt.mean()) if n else 0.0, 3),
        },
        "max_queue_age_seconds": round(float(qt.max()) if n else 0.0, 3),
        "max_ready_depth": int(res.queue_ready.max()) if len(res.queue_ready) else 0,
        "replica_minutes": round(replica_seconds / 60, 2),
        "max_replicas": int(res.pods_total.max()) if len(res.pods_total) else 0,
        "mean_replicas": round(replica_seconds / end, 2) if end else 0.0,
        "final_replicas": int(res.pods_spec[-1]) if len(res.pods_spec) else 0,
        "scale_events": len(res.scale_events),
        "slo_queue_seconds": cfg.slo_queue_seconds,
        "slo_violations": round(float(np.count_nonzero(qt > cfg.slo_queue_seconds)) / n, 5)
        if n
        else 0.0,
        "slo_met": bool(_pct(qt, 95) <= cfg.slo_queue_seconds),
        "settings": {
            **v.to_dict(),
            "pattern": cfg.pattern.kind,
            "duration_seconds": cfg.duration,
            "run_time": cfg.run_time.describe(),
            "startup_seconds": cfg.startup_seconds,
            "metric_lag_seconds": cfg.effective_metric_lag,
            "sync_period_seconds": cfg.sync_period_seconds,
            "tolerance": cfg.tolerance,
            "dt": cfg.dt,
            "seed": cfg.seed,
            "arrival_process": cfg.process,
        },
    }


@dataclass
class SweepRow:
    target_utilization: float
    summary: dict[str, Any]


def sweep(cfg: SimConfig, targets: Sequence[float]) -> tuple[list[SweepRow], SweepRow | None]:
    """Simulate each targetUtilization; the cheapest (fewest replica-minutes) meeting the SLO
    (p95 queue time <= SLO) is recommended (ties: the higher target)."""
    rows = [SweepRow(t, run(cfg.with_target(t)).summary) for t in targets]
    ok = [r for r in rows if r.summary["slo_met"]]
    best = min(
        ok, key=lambda r: (r.summary["replica_minutes"], -r.target_utilization), default=None
    )
    return rows, best


def parse_targets(spec: str) -> list[float]:
    """``0.5,0.6,0.7`` or a range ``0.5:1.0:0.1`` (inclusive)."""
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            lo, hi = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 0.1
            if step <= 0 or hi < lo:
                raise ValueError
            count = math.floor((hi - lo) / step + 1e-9) + 1
            out = [round(lo + i * step, 6) for i in range(count)]
        else:
            out = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SimulationError(
            f"bad --sweep-target {spec!r}: use a list 0.5,0.6,0.7 or a range 0.5:1.0:0.1"
        ) from None
    if not out or any(t <= 0 for t in out):
        raise SimulationError(f"bad --sweep-target {spec!r}: values must be positive")
    return out
