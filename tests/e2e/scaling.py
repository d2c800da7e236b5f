"""Drive a backlog through the chart's worker autoscaling and compare with the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kube import ROOT, VALUES, Kube, poll
from load import Load, pod_startup_seconds, run_states

RATE, LOAD_SECONDS, RUN_SECONDS = 3.0, 60, 3.0


def measured_run_seconds(url: str, run_ids: list[str]) -> list[float | None]:
    """Each run's finished_at - started_at (None where the record lacks one)."""
    import httpx

    with httpx.Client(timeout=10) as client:
        records = [client.get(f"{url}/v1/runs/{run_id}").json() for run_id in run_ids]
    return [
        float(r["finished_at"]) - float(r["started_at"])
        if r.get("finished_at") and r.get("started_at")
        else None
        for r in records
    ]


def scale_min_max_min(
    kube: Kube, kind: str, namespace: str, release: str, tmp_path: Path
) -> dict[str, Any]:
    """Install with worker.autoscaling.kind=`kind`, drive a backlog, assert 1 -> 4 -> 1 and
    every run succeeded; replay the arrivals through `langscale autoscale simulate` and
    assert the replica counts agree within one at every HPA sync. Returns the figures."""
    worker = f"{release}-langscale-worker"
    workers = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=worker"
    kube.install(release, namespace, "autoscale.yaml", sets={"worker.autoscaling.kind": kind})
    hpa_name = (
        kube.autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items[0].metadata.name
    )

    def hpa_active() -> bool:
        hpa = kube.autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa_name, namespace)
        return any(
            c.type == "ScalingActive" and c.status == "True" for c in hpa.status.conditions or []
        )

    poll(hpa_active, 90, "the HPA reads its External metric")
    assert kube.spec_replicas(namespace, worker) == 1
    url = kube.service_url(namespace, f"{release}-langscale-gateway")
    load = Load(kube, namespace, worker, url, rate=RATE, seconds=LOAD_SECONDS).start()
    try:
        poll(lambda: load.trace.first(lambda s: s.spec >= 4), 240, "scale-out to maxReplicas 4")
        poll(lambda: load.trace.samples[-1].ready >= 4, 120, "4 workers Ready")
        startup = pod_startup_seconds(kube, namespace, workers, load.trace.t0)
        poll(load.submitted, LOAD_SECONDS + 30, "all runs submitted")
        poll(
            lambda: run_states(url, load.trace.run_ids).get("succeeded") == len(load.trace.run_ids),
            240,
            "every run succeeded",
        )
        poll(lambda: load.trace.samples[-1].spec == 1, 240, "scale-in back to minReplicas 1")
        back_at = load.trace.samples[-1].t
        # Sample past the next HPA sync, so the comparison below includes the last scale-in.
        poll(lambda: load.trace.samples[-1].t > back_at + 16, 30, "a sync period after scale-in")
    finally:
        load.close()
    trace = load.trace
    assert trace.refused == 0
    first_out = trace.first(lambda s: s.spec > 1)
    at_max = trace.first(lambda s: s.spec >= 4)
    assert first_out is not None and at_max is not None
    assert startup, "no worker pod was started by the scale-out"

    # The run times the fleet really had (on a busy 2-core machine they exceed the fake
    # LLM's RUN_SECONDS, and vary), so the simulator replays the same work run by run.
    measured = measured_run_seconds(url, trace.run_ids)
    known = sorted(x for x in measured if x is not None)
    median = known[len(known) // 2] if known else RUN_SECONDS
    run_seconds = [median if x is None else x for x in measured]

    # The same arrivals, run times and values through `langscale autoscale simulate`.
    csv = tmp_path / "arrivals.csv"
    # The controller syncs every 15 s from its own start: shift the arrivals so the
    # simulator's sync times fall where the controller's did (phase of the first scale-out).
    phase = first_out.t % 15
    shift = 15 - phase
    pairs = zip(trace.arrivals, run_seconds, strict=True)
    rows = (f"{t + shift:.3f},{run:.3f}" for t, run in pairs)
    csv.write_text("t,run_seconds\n" + "\n".join(rows) + "\n")
    startup_median = startup[len(startup) // 2]
    duration = trace.samples[-1].t + shift
    argv = [
        sys.executable,
        "-m",
        "langscale.cli",
        "autoscale",
        "simulate",
        "-f",
        str(VALUES / "e2e.yaml"),
        "-f",
        str(VALUES / "autoscale.yaml"),
        "--set",
        f"worker.autoscaling.kind={kind}",
        "--pattern",
        "csv",
        "--csv",
        str(csv),
        "--duration",
        f"{duration:.0f}",
        "--run-time",
        "csv",
        "--startup-seconds",
        f"{startup_median:.1f}",
        "--metric-lag",
        "0",
        "--initial-replicas",
        "1",
        "--no-plot",
        "--out",
        str(tmp_path / "sim"),
    ]
    done = subprocess.run(argv, cwd=ROOT, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr
    events = json.loads((tmp_path / "sim" / "summary.json").read_text())["scale_events_log"]

    def simulated(s: float) -> int:
        replicas = 1
        for event in events:
            if event["time"] <= s:
                replicas = event["to"]
        return replicas

    # Compare at each of the controller's syncs, a moment after it acted.
    steps = []
    t = phase
    while t + 2 <= trace.samples[-1].t:
        steps.append((round(t, 1), trace.spec_at(t + 2), simulated(t + shift + 0.5)))
        t += 15
    worst = max(abs(real - sim) for _, real, sim in steps)
    first_arrival = trace.arrivals[0]
    figures = {
        "time_to_first_scale_out_s": round(first_out.t - first_arrival, 1),
        "time_to_max_s": round(at_max.t - first_arrival, 1),
        "pod_startup_s": [round(x, 1) for x in startup],
        "runs": len(trace.run_ids),
        "steps_t_real_sim": steps,
        "max_difference": worst,
        "run_seconds_measured_median": round(median, 2),
        "run_seconds_measured_max": round(max(run_seconds), 2),
        "simulate_command": " ".join(argv[2:]),
    }
    assert worst <= 1, f"{kind} vs simulator differ by {worst} replicas: {steps}"
    return figures
