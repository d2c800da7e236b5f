"""The HPA algorithm against the worked examples of the Kubernetes documentation
(tasks/run-application/horizontal-pod-autoscale and its walkthrough) and the controller code."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langscale.autoscale.hpa import (
    BehaviorError,
    HorizontalPodAutoscaler,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    behavior_from_dict,
    calculate_scale_down_limit_with_behaviors,
    calculate_scale_up_limit_with_scaling_rules,
    external_per_pod_replicas,
)


def hpa(
    behavior: dict[str, Any] | None = None,
    *,
    min_replicas: int = 1,
    max_replicas: int = 100,
    target: float = 0.1,
    legacy: bool = False,
) -> HorizontalPodAutoscaler:
    return HorizontalPodAutoscaler(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_average_value=target,
        behavior=None if legacy else behavior_from_dict(behavior or {}),
    )


NO_DOWN_WINDOW = {"scaleDown": {"stabilizationWindowSeconds": 0}}


# ---------------------------------------------------------------- the metric computation


def test_double_when_current_is_twice_the_target() -> None:
    # docs: "if the current metric value is 200m, and the desired value is 100m, the number of
    # replicas will be doubled". AverageValue: 2 pods averaging 200m = 400m in total.
    assert external_per_pod_replicas(2, 400, 100, 0.1) == 4
    assert hpa().step(0, 0.4, 2) == 4


def test_halve_when_current_is_half_the_target() -> None:
    # docs: "if the current value is instead 50m, you'll halve the number of replicas"
    assert external_per_pod_replicas(4, 200, 100, 0.1) == 2
    assert hpa(NO_DOWN_WINDOW).step(0, 0.2, 4) == 2


def test_within_tolerance_no_change() -> None:
    # docs: ratio 1.05 (within the 0.1 tolerance): "the control plane skips any scaling action"
    assert external_per_pod_replicas(10, 1050, 100, 0.1) == 10
    assert hpa().step(0, 1.05, 10) == 10
    assert hpa(NO_DOWN_WINDOW).step(0, 0.95, 10) == 10
    # just outside: 1.11 -> ceil(11.1) = 12
    assert hpa().step(0, 1.11, 10) == 12


def test_walkthrough_305_percent_of_50_legacy_path() -> None:
    # walkthrough: one pod at 305% of a 50% target -> 7 replicas. Without spec.behavior the
    # controller caps a scale-up at max(2 * current, 4) per sync (convertDesiredReplicasWithRules).
    h = hpa(target=50, legacy=True)
    assert h.step(0, 305, 1) == 4
    assert h.step(15, 305, 4) == 7


def test_walkthrough_with_default_behavior() -> None:
    # The defaulted behavior: +4 pods or +100% per 15 s, Max -> 1 -> 5 -> 7.
    h = hpa(target=50)
    assert h.step(0, 305, 1) == 5
    assert h.step(15, 305, 5) == 7


def test_zero_status_replicas() -> None:
    # Go float division by zero: Inf is outside the tolerance, NaN is not.
    assert external_per_pod_replicas(0, 500, 100, 0.1) == 5
    assert external_per_pod_replicas(0, 0, 100, 0.1) == 0


# ---------------------------------------------------------------- stabilization windows


def test_scale_down_stabilization_keeps_max_of_window() -> None:
    h = hpa({"scaleDown": {"stabilizationWindowSeconds": 300}})
    assert h.step(0, 1.0, 10) == 10
    assert h.step(15, 0.3, 10) == 10  # recommendation 3, but 10 in the window
    assert h.step(150, 0.6, 10) == 10
    assert h.step(285, 0.3, 10) == 10  # 10 recorded at t=0 is still in (285-300, 285]
    # At 300 the t=0 recommendation left the window: the max of {3, 6, 3, 3} is 6.
    assert h.step(300, 0.3, 10) == 6
    assert h.step(450, 0.3, 6) == 3  # 6 (t=150) is now out as well


def test_scale_down_window_applies_highest_recent_not_current() -> None:
    # docs: "the highest recommendation from within that window" is used.
    h = hpa({"scaleDown": {"stabilizationWindowSeconds": 60}})
    h.step(0, 0.8, 8)  # rec 8
    h.step(15, 1.2, 8)  # -> 12 (scale up, no up window)
    assert h.step(30, 0.2, 12) == 12
    assert h.step(76, 0.2, 12) == 2  # 12 recorded at 15 is older than 60 s


def test_scale_up_stabilization_takes_min_of_window() -> None:
    h = hpa({"scaleUp": {"stabilizationWindowSeconds": 60}})
    assert h.step(0, 0.5, 5) == 5
    assert h.step(15, 2.0, 5) == 5  # min of {5, 5, 20} = 5
    assert h.step(30, 2.0, 5) == 5
    assert h.step(61, 2.0, 5) == 10  # window holds only 20s now; rate limit +100% -> 10


# ---------------------------------------------------------------- rate policies


def test_percent_10_per_minute_limits_the_drop() -> None:
    # docs: policies Pods 4/60s and Percent 10/60s, default selectPolicy Max (biggest change):
    # at 80 replicas 10% = 8 pods go first; at 72, 10% is 7.2 and 8 pods go again.
    h = hpa(
        {
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 60},
                    {"type": "Percent", "value": 10, "periodSeconds": 60},
                ],
            }
        }
    )
    assert h.step(0, 1.0, 80) == 72
    assert h.step(15, 1.0, 72) == 72  # 8 already removed in the last 60 s
    assert h.step(45, 1.0, 72) == 72
    assert h.step(60, 1.0, 72) == 64  # the t=0 event is exactly 60 s old: outside the period


def test_pods_4_per_minute_scale_up() -> None:
    h = hpa({"scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}})
    assert h.step(0, 1.0, 1) == 5
    assert h.step(15, 1.0, 5) == 5
    assert h.step(59, 1.0, 5) == 5
    assert h.step(60, 1.0, 5) == 9
    assert h.step(120, 1.0, 9) == 10


UP_BOTH = [
    {"type": "Percent", "value": 100, "periodSeconds": 15},
    {"type": "Pods", "value": 4, "periodSeconds": 15},
]


@pytest.mark.parametrize(("select", "expected"), [("Max", 20), ("Min", 14), ("Disabled", 10)])
def test_scale_up_select_policy(select: str, expected: int) -> None:
    h = hpa({"scaleUp": {"selectPolicy": select, "policies": UP_BOTH}})
    assert h.step(0, 5.0, 10) == expected


DOWN_BOTH = [
    {"type": "Percent", "value": 50, "periodSeconds": 60},
    {"type": "Pods", "value": 2, "periodSeconds": 60},
]


@pytest.mark.parametrize(("select", "expected"), [("Max", 5), ("Min", 8), ("Disabled", 10)])
def test_scale_down_select_policy(select: str, expected: int) -> None:
    h = hpa(
        {
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "selectPolicy": select,
                "policies": DOWN_BOTH,
            }
        }
    )
    assert h.step(0, 0.1, 10) == expected


def test_scale_down_disabled_never_scales_down() -> None:
    h = hpa({"scaleDown": {"selectPolicy": "Disabled"}})
    for t in range(0, 3600, 15):
        assert h.step(t, 0.0, 10) == 10


def test_period_start_counts_scale_downs_within_the_period() -> None:
    # calculateScaleUpLimitWithScalingRules: periodStartReplicas = current - added + deleted.
    rules = ScalingRules(0, "Max", (ScalingPolicy("Pods", 4, 60),))
    down = [ScaleEvent(3, 30_000)]
    assert calculate_scale_up_limit_with_scaling_rules(7, [], down, rules, 60_000) == 14
    assert calculate_scale_up_limit_with_scaling_rules(7, [], down, rules, 90_000) == 11
    rules_down = ScalingRules(0, "Max", (ScalingPolicy("Percent", 50, 60),))
    up = [ScaleEvent(2, 30_000)]
    assert calculate_scale_down_limit_with_behaviors(10, up, [], rules_down, 60_000) == 4


# ---------------------------------------------------------------- clamping and zero


def test_max_replicas_clamp() -> None:
    h = hpa(max_replicas=20)
    assert h.step(0, 100.0, 10) == 20  # desired 1000, +100% allows 20, max 20
    assert hpa(max_replicas=20).step(0, 100.0, 25) == 20  # above max: straight to max


def test_min_replicas_clamp() -> None:
    h = hpa(NO_DOWN_WINDOW, min_replicas=2)
    assert h.step(0, 0.0, 10) == 2
    assert hpa(min_replicas=3).step(0, 10.0, 1) == 3  # below min: straight to min


def test_zero_replicas_with_min_above_zero_is_disabled() -> None:
    assert hpa().step(0, 50.0, 0) == 0


def test_legacy_downscale_stabilization_is_five_minutes() -> None:
    h = hpa(legacy=True)
    assert h.step(0, 1.0, 10) == 10
    assert h.step(150, 0.1, 10) == 10
    assert h.step(301, 0.1, 10) == 1


# ---------------------------------------------------------------- behavior parsing


def test_behavior_defaults_filled_like_the_api_server() -> None:
    b = behavior_from_dict(
        {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}
    )
    assert b is not None
    assert b.scale_up.stabilization_window_seconds == 0
    assert b.scale_up.select_policy == "Max"
    assert {p.type for p in b.scale_up.policies} == {"Pods", "Percent"}
    assert b.scale_down.stabilization_window_seconds is None  # controller flag: 300
    assert b.scale_down.policies == (ScalingPolicy("Pods", 1, 30),)
    assert behavior_from_dict(None) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"scaleUp": {"selectPolicy": "Sometimes"}},
        {"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}},
        {"scaleUp": {"policies": [{"type": "Cores", "value": 1, "periodSeconds": 15}]}},
        {"scaleDown": {"stabilizationWindowSeconds": 7200}},
        {"scaleSideways": {}},
    ],
)
def test_bad_behavior_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(BehaviorError):
        behavior_from_dict(raw)


@settings(database=None)
@given(
    replicas=st.integers(1, 50),
    metrics=st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=40),
)
def test_always_within_min_and_max(replicas: int, metrics: list[float]) -> None:
    h = hpa(min_replicas=1, max_replicas=50, target=80)
    current = replicas
    for i, m in enumerate(metrics):
        current = h.step(i * 15, m, current)
        assert 1 <= current <= 50
