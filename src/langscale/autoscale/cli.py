"""``langscale autoscale simulate``: replay a load against the chart's autoscaling settings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .arrivals import PATTERNS, ArrivalError, Pattern
from .simulate import (
    RunTime,
    SimConfig,
    SimulationError,
    SweepRow,
    parse_targets,
    run,
    sweep,
)
from .values import ValuesError, load_values

EXIT_USAGE = 2


def add_parser(subparsers: Any) -> None:
    """Register ``autoscale simulate`` on an argparse subparsers object."""
    autoscale = subparsers.add_parser(
        "autoscale", help="autoscaling tools (simulate the worker HPA / KEDA)"
    )
    autoscale.set_defaults(func=lambda _args: _usage(autoscale))
    sub = autoscale.add_subparsers(dest="autoscale_command")
    p = sub.add_parser(
        "simulate",
        help="replay an arrival pattern against the chart's worker autoscaling",
        description=(
            "Simulate the worker fleet (concurrency, run times, pod start-up) under a load "
            "pattern, scaled by the Kubernetes HPA algorithm (or KEDA) with the settings from "
            "the Helm values. Writes summary.json and simulation.png to --out."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("chart values (like helm -f / --set)")
    g.add_argument(
        "-f",
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="values file; repeatable, later files override earlier ones",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        dest="set_values",
        metavar="PATH=VALUE",
        help="e.g. worker.autoscaling.targetUtilization=0.5; repeatable",
    )
    g.add_argument(
        "--pool",
        default="default",
        metavar="NAME",
        help="the worker pool to simulate: default (the chart's worker) or a workerPools "
        "entry's name (its settings merged over worker's)",
    )
    g.add_argument(
        "--chart-values",
        default="auto",
        metavar="FILE|auto|none",
        help="the chart's default values.yaml (auto: deploy/helm/langscale/values.yaml)",
    )
    g = p.add_argument_group("load")
    g.add_argument("--pattern", default="constant", help=f"one of {', '.join(PATTERNS)}")
    g.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="runs/s: constant rate, step/burst level, diurnal peak",
    )
    g.add_argument(
        "--base-rate",
        type=float,
        default=0.0,
        help="runs/s outside the step or bursts; diurnal trough",
    )
    g.add_argument("--step-start", type=float, default=60.0, help="step: seconds")
    g.add_argument("--step-end", type=float, default=None, help="step: seconds (default: never)")
    g.add_argument("--burst-every", type=float, default=600.0, help="burst: seconds")
    g.add_argument("--burst-seconds", type=float, default=60.0, help="burst: length, seconds")
    g.add_argument(
        "--period",
        type=float,
        default=None,
        help="diurnal: period in seconds (default: the duration)",
    )
    g.add_argument(
        "--csv",
        dest="csv_path",
        default=None,
        metavar="FILE",
        help="csv: arrival timestamps in seconds, first column (and each run's run time, "
        "second column, for --run-time csv)",
    )
    g.add_argument("--arrival-process", choices=("poisson", "uniform"), default="poisson")
    g.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to simulate (default 3600; csv: last arrival + 600)",
    )
    g = p.add_argument_group("fleet and control loop")
    g.add_argument(
        "--run-time",
        default="lognormal:2,0.5",
        help="SECONDS (fixed), lognormal:MEDIAN,SIGMA or csv (each run's own, from --csv)",
    )
    g.add_argument(
        "--startup-seconds", type=float, default=30.0, help="from replica requested to taking jobs"
    )
    g.add_argument(
        "--metric-lag",
        type=float,
        default=None,
        help="seconds between the queue and what the HPA sees (default 15; "
        "0 for KEDA's metrics-api trigger)",
    )
    g.add_argument("--sync-period", type=float, default=15.0, help="HPA sync period, seconds")
    g.add_argument("--tolerance", type=float, default=0.1, help="HPA tolerance")
    g.add_argument("--initial-replicas", type=int, default=None)
    g.add_argument("--dt", type=float, default=0.1, help="simulation step, seconds")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("objective and output")
    g.add_argument(
        "--slo-queue-seconds",
        type=float,
        default=5.0,
        help="queue-time SLO: met when p95 time in queue <= this",
    )
    g.add_argument(
        "--sweep-target",
        default=None,
        metavar="LIST|LO:HI[:STEP]",
        help="simulate each targetUtilization and recommend the cheapest meeting "
        "the SLO, e.g. 0.5,0.6,0.7,0.8 or 0.5:1.0:0.1",
    )
    g.add_argument("--out", default="autoscale-sim", metavar="DIR")
    g.add_argument("--no-plot", action="store_true")
    p.set_defaults(func=simulate_command)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _error(message: str) -> int:
    print(f"langscale autoscale simulate: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def build_config(args: argparse.Namespace) -> SimConfig:
    values = load_values(args.values, args.set_values, args.chart_values, args.pool)
    pattern = Pattern(
        kind=args.pattern,
        rate=args.rate,
        base_rate=args.base_rate,
        step_start=args.step_start,
        step_end=args.step_end,
        burst_every=args.burst_every,
        burst_seconds=args.burst_seconds,
        period=args.period,
        csv_path=args.csv_path,
    )
    if args.pattern not in PATTERNS:
        raise ArrivalError(f"unknown pattern {args.pattern!r}; choose one of {', '.join(PATTERNS)}")
    duration = args.duration
    if duration is None:
        duration = 3600.0
        if args.pattern == "csv":
            from .arrivals import read_csv

            if not args.csv_path:
                raise ArrivalError("pattern csv needs --csv FILE")
            duration = float(read_csv(args.csv_path)[-1]) + 600.0
    return SimConfig(
        values=values,
        pattern=pattern,
        duration=duration,
        run_time=RunTime.parse(args.run_time),
        startup_seconds=args.startup_seconds,
        metric_lag_seconds=args.metric_lag,
        sync_period_seconds=args.sync_period,
        tolerance=args.tolerance,
        dt=args.dt,
        seed=args.seed,
        process=args.arrival_process,
        slo_queue_seconds=args.slo_queue_seconds,
        initial_replicas=args.initial_replicas,
    )


def format_summary(s: dict[str, Any]) -> str:
    q = s["queue_time_seconds"]
    st = s["settings"]
    kind = st["kind"] if st["enabled"] else "none (fixed replicas)"
    rows = [
        (
            "autoscaler",
            f"{kind} on {st['metric']}, {st['minReplicas']}..{st['maxReplicas']} "
            f"replicas, target {st['targetPerReplica']:g}/replica "
            f"({st['concurrency']} x {st['targetUtilization']:g})",
        ),
        (
            "load",
            f"{st['pattern']}, {s['runs']} runs in {st['duration_seconds']:g}s, "
            f"run time {st['run_time']}",
        ),
        ("time in queue p50/p95/p99", f"{q['p50']:.3f} / {q['p95']:.3f} / {q['p99']:.3f} s"),
        ("max time in queue", f"{q['max']:.3f} s"),
        ("max ready depth", f"{s['max_ready_depth']}"),
        (
            "replica-minutes",
            f"{s['replica_minutes']:.1f} (mean {s['mean_replicas']:.2f}, "
            f"max {s['max_replicas']}, final {s['final_replicas']})",
        ),
        ("scale events", f"{s['scale_events']}"),
        (
            f"SLO: queue <= {s['slo_queue_seconds']:g}s",
            f"{s['slo_violations'] * 100:.2f}% of runs over; p95 "
            f"{'meets' if s['slo_met'] else 'MISSES'} it",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def format_sweep(rows: list[SweepRow], best: SweepRow | None, slo: float) -> str:
    head = (
        "target",
        "per-replica",
        "p95 s",
        "p99 s",
        "max s",
        f">{slo:g}s",
        "replica-min",
        "max rep",
        "SLO",
    )
    lines = [head]
    for r in rows:
        s = r.summary
        q = s["queue_time_seconds"]
        mark = "ok" if s["slo_met"] else "miss"
        if best is r:
            mark += "  <- recommended"
        lines.append(
            (
                f"{r.target_utilization:g}",
                f"{s['settings']['targetPerReplica']:g}",
                f"{q['p95']:.2f}",
                f"{q['p99']:.2f}",
                f"{q['max']:.2f}",
                f"{s['slo_violations'] * 100:.2f}%",
                f"{s['replica_minutes']:.1f}",
                f"{s['max_replicas']}",
                mark,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    out = [
        "  ".join(c.rjust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in lines
    ]
    if best is None:
        out.append(
            f"no target meets the SLO (p95 time in queue <= {slo:g}s): "
            "raise maxReplicas, lower startup time or lower the target"
        )
    else:
        out.append(
            f"recommended: worker.autoscaling.targetUtilization={best.target_utilization:g} "
            f"(cheapest meeting p95 <= {slo:g}s)"
        )
    return "\n".join(out)


def simulate_command(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(args)
        targets = parse_targets(args.sweep_target) if args.sweep_target else None
        out = Path(args.out)
        if targets is None:
            res = run(cfg)
            print(format_summary(res.summary))
            out.mkdir(parents=True, exist_ok=True)
            summary = {
                **res.summary,
                "scale_events_log": [
                    {"time": t, "from": a, "to": b} for t, a, b in res.scale_events
                ],
            }
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            written = [out / "summary.json"]
            if not args.no_plot:
                from .plot import plot

                written.append(plot(res, out / "simulation.png"))
        else:
            rows, best = sweep(cfg, targets)
            print(format_sweep(rows, best, cfg.slo_queue_seconds))
            out.mkdir(parents=True, exist_ok=True)
            doc = {
                "slo_queue_seconds": cfg.slo_queue_seconds,
                "recommended_target_utilization": best.target_utilization if best else None,
                "results": [
                    {"target_utilization": r.target_utilization, **r.summary} for r in rows
                ],
            }
            (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
            written = [out / "sweep.json"]
            if not args.no_plot:
                from .plot import plot

                chosen = best.target_utilization if best else targets[-1]
                written.append(plot(run(cfg.with_target(chosen)), out / "simulation.png"))
    except (ValuesError, ArrivalError, SimulationError) as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"cannot write output: {exc}")
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m langscale.autoscale")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["autoscale", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))
