"""The simulator end to end (without the CLI): steady state, scale-in, KEDA, determinism."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from langscale.autoscale.arrivals import ArrivalError, Pattern, generate, read_csv
from langscale.autoscale.keda import KedaScaledObject
from langscale.autoscale.simulate import (
    RunTime,
    SimConfig,
    SimResult,
    SimulationError,
    parse_targets,
    run,
    sweep,
)
from langscale.autoscale.values import extract, load_values, merge


def chart(**autoscaling: Any) -> Any:
    """The chart layout (not the repo's file), with autoscaling overrides."""
    return load_values(
        chart_values="none",
        set_exprs=[f"worker.autoscaling.{k}={v}" for k, v in autoscaling.items()],
    )


def replicas_at(res: SimResult, t: float) -> int:
    return int(res.pods_spec[round(t / res.dt)])


STEP_END = 900.0


@pytest.fixture(scope="module")
def step_result() -> SimResult:
    # 200 runs/s of 1 s each = 200 jobs in progress; target 100 x 0.8 = 80 per replica.
    cfg = SimConfig(
        values=chart(),
        pattern=Pattern(kind="step", rate=200, step_start=60, step_end=STEP_END),
        duration=1500,
        run_time=RunTime("fixed", 1.0),
        startup_seconds=30,
        process="uniform",
        seed=1,
    )
    return run(cfg)


def test_step_load_settles_at_ceil_backlog_over_target(step_result: SimResult) -> None:
    # backlog ~ 200 -> ceil(200 / 80) = 3 replicas once the start-up backlog is gone and the
    # 300 s scale-down window has passed.
    for t in (700, 800, 890):
        assert replicas_at(step_result, t) == 3
    # It scaled up past 3 first: 30 s start-up while 200 runs/s queue up.
    assert step_result.summary["max_replicas"] > 3
    assert step_result.summary["runs_still_queued"] == 0


def test_returns_to_min_after_load_plus_window(step_result: SimResult) -> None:
    # The load stops at 900; the HPA sees it 15 s later (metric lag); the 300 s scale-down
    # window then keeps the highest recommendation (3) until 900 + 15 + 300.
    assert replicas_at(step_result, STEP_END + 15 + 300 - 1) == 3
    assert replicas_at(step_result, STEP_END + 15 + 300 + 1) == 1
    assert step_result.summary["final_replicas"] == 1
    last = step_result.scale_events[-1]
    assert last == (STEP_END + 15 + 300, 3, 1)


def test_summary_fields(step_result: SimResult) -> None:
    s = step_result.summary
    q = s["queue_time_seconds"]
    assert s["runs"] == 168_000  # 200/s x 840 s, uniform arrivals
    assert 0 <= q["p50"] <= q["p95"] <= q["p99"] <= q["max"] == s["max_queue_age_seconds"]
    assert 0 < s["slo_violations"] < 1
    assert s["slo_met"] == (q["p95"] <= 5.0)
    # Replica-minutes: at least 1 pod for 25 minutes, at most 20.
    assert 25 <= s["replica_minutes"] <= 20 * 25


def test_enough_fixed_capacity_means_no_queueing() -> None:
    v = chart(enabled="false")
    v = replace(v, replica_count=3)
    cfg = SimConfig(
        values=v,
        pattern=Pattern(kind="constant", rate=200),
        duration=300,
        run_time=RunTime("fixed", 1.0),
        process="uniform",
    )
    s = run(cfg).summary
    assert s["queue_time_seconds"]["max"] <= 0.1 + 1e-9  # one step of resolution
    assert s["replica_minutes"] == pytest.approx(15.0)
    assert s["scale_events"] == 0


def test_metric_ready_flaps_where_backlog_holds() -> None:
    base = SimConfig(
        values=chart(),
        pattern=Pattern(kind="constant", rate=150),
        duration=1200,
        run_time=RunTime("fixed", 2.0),
        process="uniform",
    )
    backlog = run(base)
    ready = run(replace(base, values=chart(metric="ready")))
    # backlog = 300 jobs in progress -> ceil(300/80) = 4 replicas, and it stays there.
    assert backlog.summary["final_replicas"] == 4
    assert [e for e in backlog.scale_events if e[0] > 600] == []
    # ready depth drops to 0 as soon as capacity suffices, so the HPA scales in until jobs
    # queue again, then out again: the reason the chart defaults to backlog.
    assert ready.summary["scale_events"] > 2 * backlog.summary["scale_events"]
    assert ready.summary["replica_minutes"] > backlog.summary["replica_minutes"]
    assert ready.summary["queue_time_seconds"]["p95"] > backlog.summary["queue_time_seconds"]["p95"]


def test_deterministic_with_seed() -> None:
    cfg = SimConfig(
        values=chart(),
        pattern=Pattern(kind="burst", rate=400, base_rate=50, burst_every=300, burst_seconds=60),
        duration=900,
        run_time=RunTime("lognormal", 2.0, 0.6),
        seed=42,
    )
    a, b = run(cfg), run(cfg)
    assert a.summary == b.summary
    assert a.scale_events == b.scale_events
    c = run(replace(cfg, seed=43))
    assert c.summary != a.summary


def test_sweep_same_traffic_and_recommends_cheapest_meeting_slo() -> None:
    cfg = SimConfig(
        values=chart(),
        pattern=Pattern(kind="diurnal", rate=300, base_rate=30),
        duration=1800,
        run_time=RunTime("lognormal", 2.0, 0.5),
        seed=3,
        slo_queue_seconds=2.0,
    )
    rows, best = sweep(cfg, [0.5, 0.8, 1.0])
    assert len({r.summary["runs"] for r in rows}) == 1  # identical arrivals for every target
    cost = [r.summary["replica_minutes"] for r in rows]
    assert cost[0] > cost[1] > cost[2]  # a higher target packs more work per pod
    assert best is not None
    assert best.summary["slo_met"]
    assert best.summary["replica_minutes"] == min(
        r.summary["replica_minutes"] for r in rows if r.summary["slo_met"]
    )


def test_parse_targets() -> None:
    assert parse_targets("0.5,0.6,0.7") == [0.5, 0.6, 0.7]
    assert parse_targets("0.5:1.0:0.1") == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    for bad in ("x", "1:0.5", "0,-1", "0.5:1:0"):
        with pytest.raises(SimulationError):
            parse_targets(bad)


def test_two_hour_diurnal_is_fast() -> None:
    # Not a timing assertion: it has to finish, with ~1.4 M runs, well inside the test budget.
    cfg = SimConfig(
        values=chart(),
        pattern=Pattern(kind="diurnal", rate=300, base_rate=30),
        duration=7200,
        run_time=RunTime("lognormal", 2.0, 0.5),
        seed=1,
    )
    s = run(cfg).summary
    assert s["runs"] > 1_000_000
    assert s["runs_still_queued"] < 100


# ---------------------------------------------------------------- KEDA


def keda_values(**extra: Any) -> Any:
    return chart(
        kind="keda",
        minReplicas=0,
        **{"keda.cooldownPeriod": 300, "keda.pollingInterval": 15, **extra},
    )


def test_keda_scales_from_zero_on_first_arrival_and_back_after_cooldown() -> None:
    cfg = SimConfig(
        values=keda_values(),
        pattern=Pattern(kind="step", rate=20, step_start=100, step_end=200),
        duration=900,
        run_time=RunTime("fixed", 1.0),
        startup_seconds=10,
        process="uniform",
    )
    res = run(cfg)
    assert cfg.effective_metric_lag == 0  # metrics-api: KEDA asks the gateway directly
    assert replicas_at(res, 50) == 0
    first = res.scale_events[0]
    # First poll at or after the first arrival (100.025 s): 105 s, 0 -> 1.
    assert first == (105.0, 0, 1)
    # The HPA KEDA created takes over from 1 (here: 100 queued at 105 s -> ceil(100/80) = 2).
    assert replicas_at(res, 150) >= 1
    assert int(res.pods_ready[round(150 / res.dt)]) >= 1
    # Last activity at the poll of 195 s (jobs in progress until ~201 s): the first poll with
    # lastActiveTime + 300 < now is 510 s.
    last = res.scale_events[-1]
    assert last == (510.0, 1, 0)
    assert res.summary["final_replicas"] == 0
    # Everybody waited for the cold start: 5 s poll wait + 10 s start-up at most.
    assert res.summary["queue_time_seconds"]["max"] <= 15.2


def test_keda_poll_unit() -> None:
    k = KedaScaledObject(
        min_replica_count=0,
        max_replica_count=10,
        target_value=80,
        behavior=None,
        polling_interval=15,
        cooldown_period=300,
    )
    assert k.poll(0, 0, 0) == 0
    assert k.poll(15, 3, 0) == 1
    assert k.poll(30, 0, 1) == 1  # cooling down
    assert k.poll(315, 0, 1) == 1  # 15 + 300 is not before 315
    assert k.poll(330, 0, 1) == 0
    assert k.hpa_step(345, 50, 0) == 0  # HPA disabled at zero replicas
    k2 = KedaScaledObject(min_replica_count=2, max_replica_count=10, target_value=80, behavior=None)
    assert k2.poll(0, 5, 0) == 2
    assert k2.poll(15, 0, 1) == 2


# ---------------------------------------------------------------- arrivals and values


def test_patterns_mean_rate() -> None:
    rng = np.random.default_rng(0)
    assert len(generate(Pattern(kind="constant", rate=50), 100, rng)) == pytest.approx(
        5000, rel=0.05
    )
    assert len(generate(Pattern(kind="constant", rate=50), 100, rng, "uniform")) == 5000
    step = generate(Pattern(kind="step", rate=10, step_start=50, step_end=60), 100, rng, "uniform")
    assert len(step) == 100 and step.min() >= 50 and step.max() < 60
    burst = generate(
        Pattern(kind="burst", rate=10, burst_every=50, burst_seconds=10), 100, rng, "uniform"
    )
    assert len(burst) == 200
    d = generate(Pattern(kind="diurnal", rate=100, base_rate=0), 1000, rng, "uniform")
    assert len(d) == pytest.approx(50_000, rel=0.01)  # mean of (1 - cos)/2 is 1/2
    with pytest.raises(ArrivalError):
        generate(Pattern(kind="sawtooth"), 100, rng)


def test_csv(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("ts,other\n1700000010.5,x\n1700000000,y\n1700000001,z\n")
    assert read_csv(p).tolist() == [0.0, 1.0, 10.5]
    p.write_text("0\n1\nabc\n")
    with pytest.raises(ArrivalError, match=r"a\.csv:3"):
        read_csv(p)
    p.write_text("")
    with pytest.raises(ArrivalError, match="no arrival"):
        read_csv(p)
    with pytest.raises(ArrivalError, match="cannot read"):
        read_csv(tmp_path / "missing.csv")


def test_csv_run_times_replay_each_runs_own_duration(tmp_path: Path) -> None:
    # 400 runs over 40 s; the second column is each run's own run time, the order of the
    # rows is not the order of arrival.
    def trace(long_every: int) -> Path:
        rows = [f"{i / 10:.1f},{200 if i % long_every == 0 else 0.5}" for i in range(400)]
        path = tmp_path / f"every-{long_every}.csv"
        path.write_text("t,run_seconds\n" + "\n".join(reversed(rows)) + "\n")
        return path

    def peak(path: Path) -> int:
        cfg = SimConfig(
            values=chart(),
            pattern=Pattern(kind="csv", csv_path=str(path)),
            duration=300,
            run_time=RunTime.parse("csv"),
        )
        result = run(cfg)
        assert result.summary["settings"]["run_time"] == "recorded per run (CSV second column)"
        return int(result.summary["max_replicas"])

    # All long: ~400 in progress -> ceil(400 / 80) = 5 replicas; none long: one replica.
    assert peak(trace(long_every=1)) == 5
    assert peak(trace(long_every=1000)) == 1
    # Half long: strictly between the two. Any one fixed run time (their median is 0.5 s or
    # 200 s) gives 1 or 5 replicas; only each run's own gives a value between (its exact
    # value depends on the runs queued behind the long ones at each sync).
    assert 1 < peak(trace(long_every=2)) < 5


def test_csv_run_times_need_a_second_column_on_every_row(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("t,run_seconds\n0,1.5\n1,\n")
    cfg = SimConfig(
        values=chart(),
        pattern=Pattern(kind="csv", csv_path=str(path)),
        duration=60,
        run_time=RunTime.parse("csv"),
    )
    with pytest.raises(ArrivalError, match="second column of every row"):
        run(cfg)
    with pytest.raises(ArrivalError, match="need --pattern csv"):
        run(replace(cfg, pattern=Pattern(kind="constant", rate=1)))


def test_sample_csv_reads() -> None:
    sample = Path(__file__).parents[2] / "examples" / "autoscale" / "arrivals.csv"
    times = read_csv(sample)
    assert len(times) > 1000 and times[0] >= 0


def test_values_merge_order_and_set(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("worker:\n  concurrency: 50\n  autoscaling:\n    maxReplicas: 7\n")
    b.write_text("worker:\n  autoscaling:\n    maxReplicas: 9\n    behavior: null\n")
    v = load_values([a, b], ["worker.autoscaling.targetUtilization=0.5"], chart_values="none")
    assert (v.concurrency, v.max_replicas, v.target_utilization) == (50, 9, 0.5)
    assert v.target_per_replica == 25
    assert v.behavior is None  # null removes the behavior: the legacy HPA path
    assert v.min_replicas == 1 and v.kind == "hpa"
    v2 = load_values(
        set_exprs=[
            "worker.autoscaling.behavior.scaleDown.policies[0].value=10,"
            "worker.autoscaling.kind=keda"
        ],
        chart_values="none",
    )
    assert v2.behavior is not None and v2.behavior.scale_down.policies[0].value == 10
    assert v2.kind == "keda"


def test_reads_the_charts_values_file_when_present() -> None:
    chart_file = Path(__file__).parents[2] / "deploy" / "helm" / "langscale" / "values.yaml"
    if not chart_file.is_file():
        pytest.skip("chart not present")
    v = load_values(chart_values=chart_file)
    assert v.source == (str(chart_file),)
    assert v.kind in ("hpa", "keda") and v.concurrency >= 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"kind": "vpa"}, "kind must be hpa or keda"),
        ({"metric": "cpu"}, "metric must be backlog or ready"),
        ({"minReplicas": 5, "maxReplicas": 2}, "above maxReplicas"),
        ({"minReplicas": 0}, "needs kind keda"),
        ({"targetUtilization": "lots"}, "must be a number"),
        ({"behavior": {"scaleUp": {"selectPolicy": "Often"}}}, "selectPolicy"),
    ],
)
def test_bad_values(override: dict[str, Any], message: str) -> None:
    from langscale.autoscale.values import DEFAULT_VALUES, ValuesError

    bad = merge(DEFAULT_VALUES, {"worker": {"autoscaling": override}})
    with pytest.raises(ValuesError, match=message):
        extract(bad)
