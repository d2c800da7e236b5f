"""The Kubernetes HPA algorithm for one External metric with an AverageValue target.

A line-by-line port of kube-controller-manager's pkg/controller/podautoscaler:

* replica_calculator.go ``GetExternalPerPodMetricReplicas`` -> :func:`external_per_pod_replicas`
* horizontal.go ``reconcileAutoscaler`` (the min/max/zero branches)
  -> :meth:`HorizontalPodAutoscaler.step`
* horizontal.go ``recordInitialRecommendation``, ``stabilizeRecommendationWithBehaviors``,
  ``convertDesiredReplicasWithBehaviorRate``, ``calculateScaleUpLimitWithScalingRules``,
  ``calculateScaleDownLimitWithBehaviors``, ``getReplicasChangePerPeriod``,
  ``storeScaleEvent`` / ``markScaleEventsOutdated``
* the pre-``behavior`` path (``spec.behavior`` absent): ``normalizeDesiredReplicas``,
  ``stabilizeRecommendation``, ``convertDesiredReplicasWithRules``, ``calculateScaleUpLimit``
* pkg/apis/autoscaling/v2 defaults.go ``GenerateHPAScaleUpRules`` / ``GenerateHPAScaleDownRules``
  -> :func:`behavior_from_dict`

Times are kept in integer milliseconds so the strict ``After``/``Before`` comparisons of the Go
code behave exactly (an event recorded exactly one period ago is outside the period).
Quantities are milli-values (``Quantity.MilliValue()``), as the controller sees them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# kube-controller-manager defaults.
DEFAULT_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
DEFAULT_SYNC_PERIOD_SECONDS = 15.0  # --horizontal-pod-autoscaler-sync-period
DEFAULT_DOWNSCALE_STABILIZATION_SECONDS = 300  # --horizontal-pod-autoscaler-downscale-stabilization

# horizontal.go: legacy (no behavior) scale-up limit.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

POLICY_PODS = "Pods"
POLICY_PERCENT = "Percent"
SELECT_MAX = "Max"
SELECT_MIN = "Min"
SELECT_DISABLED = "Disabled"

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)


class BehaviorError(ValueError):
    """An HPA ``behavior`` block that the API server would reject."""


@dataclass(frozen=True)
class ScalingPolicy:
    type: str  # "Pods" | "Percent"
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    # None only for scaleDown: the controller fills in its downscale-stabilization flag
    # (maybeInitScaleDownStabilizationWindow).
    stabilization_window_seconds: int | None
    select_policy: str
    policies: tuple[ScalingPolicy, ...]


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


def default_scale_up_rules() -> ScalingRules:
    """GenerateHPAScaleUpRules defaults: no stabilization, +100% or +4 pods per 15 s, Max."""
    return ScalingRules(
        stabilization_window_seconds=0,
        select_policy=SELECT_MAX,
        policies=(ScalingPolicy(POLICY_PODS, 4, 15), ScalingPolicy(POLICY_PERCENT, 100, 15)),
    )


def default_scale_down_rules() -> ScalingRules:
    """GenerateHPAScaleDownRules defaults: window from the controller flag, -100% per 15 s."""
    return ScalingRules(
        stabilization_window_seconds=None,
        select_policy=SELECT_MAX,
        policies=(ScalingPolicy(POLICY_PERCENT, 100, 15),),
    )


def _rules_from_dict(raw: Any, default: ScalingRules, where: str) -> ScalingRules:
    if raw is None:
        return default
    if not isinstance(raw, Mapping):
        raise BehaviorError(f"{where} must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"stabilizationWindowSeconds", "selectPolicy", "policies"}
    if unknown:
        raise BehaviorError(f"{where}: unknown field(s) {sorted(unknown)}")
    window = raw.get("stabilizationWindowSeconds", default.stabilization_window_seconds)
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= 3600
    ):
        raise BehaviorError(
            f"{where}.stabilizationWindowSeconds must be an integer 0..3600, got {window!r}"
        )
    select = raw.get("selectPolicy", default.select_policy)
    if select not in (SELECT_MAX, SELECT_MIN, SELECT_DISABLED):
        raise BehaviorError(f"{where}.selectPolicy must be Max, Min or Disabled, got {select!r}")
    raw_policies = raw.get("policies")
    if raw_policies is None:
        policies = default.policies
    else:
        if not isinstance(raw_policies, list):
            raise BehaviorError(f"{where}.policies must be a list")
        out: list[ScalingPolicy] = []
        for i, p in enumerate(raw_policies):
            here = f"{where}.policies[{i}]"
            if not isinstance(p, Mapping):
                raise BehaviorError(f"{here} must be a mapping")
            ptype, value, period = p.get("type"), p.get("value"), p.get("periodSeconds")
            if ptype not in (POLICY_PODS, POLICY_PERCENT):
                raise BehaviorError(f"{here}.type must be Pods or Percent, got {ptype!r}")
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise BehaviorError(f"{here}.value must be a positive integer, got {value!r}")
            if isinstance(period, bool) or not isinstance(period, int) or not 0 < period <= 1800:
                raise BehaviorError(
                    f"{here}.periodSeconds must be an integer 1..1800, got {period!r}"
                )
            out.append(ScalingPolicy(ptype, value, period))
        if not out and select != SELECT_DISABLED:
            raise BehaviorError(f"{where}.policies must not be empty unless selectPolicy Disabled")
        policies = tuple(out)
    return ScalingRules(window, select, policies)


def behavior_from_dict(raw: Any) -> Behavior | None:
    """Parse an autoscaling/v2 ``spec.behavior`` mapping, filling defaults like the API server.

    ``None`` (no behavior) selects the controller's legacy normalization path.
    """
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise BehaviorError(f"behavior must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"scaleUp", "scaleDown"}
    if unknown:
        raise BehaviorError(f"behavior: unknown field(s) {sorted(unknown)}")
    return Behavior(
        scale_up=_rules_from_dict(raw.get("scaleUp"), default_scale_up_rules(), "scaleUp"),
        scale_down=_rules_from_dict(raw.get("scaleDown"), default_scale_down_rules(), "scaleDown"),
    )


# --------------------------------------------------------------------------- pure helpers


def to_milli(value: float) -> int:
    """A quantity's MilliValue() (rounded up, as resource.Quantity does)."""
    return math.ceil(round(value * 1000, 6))


def external_per_pod_replicas(
    status_replicas: int, usage_milli: int, target_per_pod_milli: int, tolerance: float
) -> int:
    """replica_calculator.go GetExternalPerPodMetricReplicas.

    usageRatio = usage / (target * statusReplicas); outside the tolerance the proposal is
    ceil(usage / target), inside it the replica count stays.
    """
    if target_per_pod_milli <= 0:
        raise ValueError("target per pod must be positive")
    replica_count = status_replicas
    denom = float(target_per_pod_milli) * float(replica_count)
    if denom == 0.0:
        # Go float division: x/0 = +Inf (outside any tolerance), 0/0 = NaN (never outside).
        usage_ratio = math.inf if usage_milli > 0 else math.nan
    else:
        usage_ratio = float(usage_milli) / denom
    if abs(1.0 - usage_ratio) > tolerance:
        replica_count = math.ceil(float(usage_milli) / float(target_per_pod_milli))
    return replica_count


@dataclass
class ScaleEvent:
    """horizontal.go timestampedScaleEvent."""

    replica_change: int  # always positive; direction is which list it is in
    timestamp_ms: int
    outdated: bool = False


@dataclass
class Recommendation:
    """horizontal.go timestampedRecommendation."""

    recommendation: int
    timestamp_ms: int


def get_replicas_change_per_period(
    period_seconds: int, events: list[ScaleEvent], now_ms: int
) -> int:
    """horizontal.go getReplicasChangePerPeriod: sum of changes strictly after now - period."""
    cutoff = now_ms - period_seconds * 1000
    return sum(e.replica_change for e in events if e.timestamp_ms > cutoff)


def calculate_scale_up_limit_with_scaling_rules(
    current_replicas: int,
    scale_up_events: list[ScaleEvent],
    scale_down_events: list[ScaleEvent],
    rules: ScalingRules,
    now_ms: int,
) -> int:
    """horizontal.go calculateScaleUpLimitWithScalingRules.

    Each policy proposes from the replica count at the start of its period (current minus what
    was added plus what was removed within the period); Max takes the largest proposal,
    Min the smallest, Disabled freezes scale-up.
    """
    if rules.select_policy == SELECT_DISABLED:
        return current_replicas
    if rules.select_policy == SELECT_MIN:
        result, pick = MAX_INT32, min
    else:
        result, pick = MIN_INT32, max
    for policy in rules.policies:
        added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, now_ms)
        deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, now_ms)
        period_start = current_replicas - added + deleted
        if policy.type == POLICY_PODS:
            proposed = period_start + policy.value
        else:
            # Rounded up so that a small percentage of a small count still adds a pod.
            proposed = math.ceil(float(period_start) * (1 + float(policy.value) / 100))
        result = pick(result, proposed)
    return result


def calculate_scale_down_limit_with_behaviors(
    current_replicas: int,
    scale_up_events: list[ScaleEvent],
    scale_down_events: list[ScaleEvent],
    rules: ScalingRules,
    now_ms: int,
) -> int:
    """horizontal.go calculateScaleDownLimitWithBehaviors.

    Max (the default) allows the biggest drop, i.e. the *smallest* proposed count; Min the
    smallest drop. Percent proposals are truncated toward zero (int32(float)).
    """
    if rules.select_policy == SELECT_DISABLED:
        return current_replicas
    if rules.select_policy == SELECT_MIN:
        result, pick = MIN_INT32, max
    else:
        result, pick = MAX_INT32, min
    for policy in rules.policies:
        added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, now_ms)
        deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, now_ms)
        period_start = current_replicas - added + deleted
        if policy.type == POLICY_PODS:
            proposed = period_start - policy.value
        else:
            proposed = int(float(period_start) * (1 - float(policy.value) / 100))
        result = pick(result, proposed)
    return result


def convert_desired_replicas_with_rules(
    current_replicas: int, desired_replicas: int, min_replicas: int, max_replicas: int
) -> int:
    """horizontal.go convertDesiredReplicasWithRules (no ``behavior``): at most
    max(2 * current, 4) on a scale-up, then min/max clamping."""
    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current_replicas, SCALE_UP_LIMIT_MINIMUM))
    maximum_allowed = min(max_replicas, scale_up_limit)
    if desired_replicas < min_replicas:
        return min_replicas
    if desired_replicas > maximum_allowed:
        return maximum_allowed
    return desired_replicas


def _longest_policy_period(rules: ScalingRules) -> int:
    """horizontal.go getLongestPolicyPeriod."""
    return max((p.period_seconds for p in rules.policies), default=0)


def _mark_scale_events_outdated(events: list[ScaleEvent], longest: int, now_ms: int) -> None:
    """horizontal.go markScaleEventsOutdated."""
    cutoff = now_ms - longest * 1000
    for e in events:
        if e.timestamp_ms < cutoff:
            e.outdated = True


# --------------------------------------------------------------------------- the controller


@dataclass
class Decision:
    """What one sync computed (for tracing and the tests)."""

    time: float
    metric_value: float
    current_replicas: int
    proposal: int  # from the metric, before normalization (-1 when the metric was not used)
    stabilized: int
    desired: int


@dataclass
class HorizontalPodAutoscaler:
    """One HPA with one External metric and an AverageValue target.

    ``step`` is one ``reconcileAutoscaler`` pass; the caller invokes it every sync period and
    applies the returned replica count to the workload (recorded as a scale event when it
    differs, as the controller does after a successful scale update).
    """

    min_replicas: int
    max_replicas: int
    target_average_value: float
    behavior: Behavior | None
    tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilization_seconds: int = DEFAULT_DOWNSCALE_STABILIZATION_SECONDS
    recommendations: list[Recommendation] = field(default_factory=list)
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    record_decisions: bool = False

    def __post_init__(self) -> None:
        if self.max_replicas < 1:
            raise ValueError("maxReplicas must be at least 1")
        if self.min_replicas < 0 or self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be between 0 and maxReplicas")
        self.target_milli = to_milli(self.target_average_value)
        if self.target_milli <= 0:
            raise ValueError("the target average value must be positive")

    # -- horizontal.go reconcileAutoscaler -----------------------------------------------
    def step(
        self,
        now: float,
        metric_value: float,
        current_replicas: int,
        status_replicas: int | None = None,
    ) -> int:
        """Return the replica count the controller would set at time ``now`` (seconds).

        ``current_replicas`` is the scale subresource's spec.replicas, ``status_replicas``
        its status.replicas (defaults to the same).
        """
        now_ms = round(now * 1000)
        if status_replicas is None:
            status_replicas = current_replicas
        # recordInitialRecommendation
        if not self.recommendations:
            self.recommendations.append(Recommendation(current_replicas, now_ms))
        min_replicas = self.min_replicas
        proposal = -1
        stabilized = current_replicas
        if current_replicas == 0 and min_replicas != 0:
            # "scaling is disabled since the replica count of the target is zero"
            return 0
        if current_replicas > self.max_replicas:
            desired = self.max_replicas
        elif current_replicas < min_replicas:
            desired = min_replicas
        else:
            proposal = external_per_pod_replicas(
                status_replicas, to_milli(metric_value), self.target_milli, self.tolerance
            )
            desired = max(0, proposal)
            if self.behavior is None:
                stabilized = self._stabilize_recommendation(desired, now_ms)
                desired = convert_desired_replicas_with_rules(
                    current_replicas, stabilized, min_replicas, self.max_replicas
                )
            else:
                stabilized = self._stabilize_recommendation_with_behaviors(
                    current_replicas, desired, now_ms
                )
                desired = self._convert_desired_replicas_with_behavior_rate(
                    current_replicas, stabilized, now_ms
                )
        if desired != current_replicas:
            self._store_scale_event(current_replicas, desired, now_ms)
        if self.record_decisions:
            self.decisions.append(
                Decision(now, metric_value, current_replicas, proposal, stabilized, desired)
            )
        return desired

    # -- horizontal.go stabilizeRecommendation (no behavior) ------------------------------
    def _stabilize_recommendation(self, prenormalized: int, now_ms: int) -> int:
        max_recommendation = prenormalized
        cutoff = now_ms - self.downscale_stabilization_seconds * 1000
        old_index = -1
        for i, rec in enumerate(self.recommendations):
            if rec.timestamp_ms < cutoff:
                old_index = i
            elif rec.recommendation > max_recommendation:
                max_recommendation = rec.recommendation
        self._record(prenormalized, now_ms, old_index)
        return max_recommendation

    def _record(self, recommendation: int, now_ms: int, old_index: int) -> None:
        new = Recommendation(recommendation, now_ms)
        if old_index >= 0:
            self.recommendations[old_index] = new
        else:
            self.recommendations.append(new)

    def _windows(self) -> tuple[int, int]:
        assert self.behavior is not None
        up = self.behavior.scale_up.stabilization_window_seconds or 0
        down = self.behavior.scale_down.stabilization_window_seconds
        if down is None:  # maybeInitScaleDownStabilizationWindow
            down = self.downscale_stabilization_seconds
        return up, down

    # -- horizontal.go stabilizeRecommendationWithBehaviors -------------------------------
    def _stabilize_recommendation_with_behaviors(
        self, current_replicas: int, desired: int, now_ms: int
    ) -> int:
        up_window, down_window = self._windows()
        up_cutoff = now_ms - up_window * 1000
        down_cutoff = now_ms - down_window * 1000
        up_recommendation = desired  # min over the scale-up window
        down_recommendation = desired  # max over the scale-down window
        old_index = -1
        for i, rec in enumerate(self.recommendations):
            if rec.timestamp_ms > up_cutoff:
                up_recommendation = min(rec.recommendation, up_recommendation)
            if rec.timestamp_ms > down_cutoff:
                down_recommendation = max(rec.recommendation, down_recommendation)
            if rec.timestamp_ms < up_cutoff and rec.timestamp_ms < down_cutoff:
                old_index = i
        recommendation = current_replicas
        if recommendation < up_recommendation:
            recommendation = up_recommendation
        if recommendation > down_recommendation:
            recommendation = down_recommendation
        self._record(desired, now_ms, old_index)
        return recommendation

    # -- horizontal.go convertDesiredReplicasWithBehaviorRate -----------------------------
    def _convert_desired_replicas_with_behavior_rate(
        self, current_replicas: int, desired: int, now_ms: int
    ) -> int:
        assert self.behavior is not None
        if desired > current_replicas:
            limit = calculate_scale_up_limit_with_scaling_rules(
                current_replicas,
                self.scale_up_events,
                self.scale_down_events,
                self.behavior.scale_up,
                now_ms,
            )
            limit = max(limit, current_replicas)
            maximum_allowed = min(self.max_replicas, limit)
            return min(desired, maximum_allowed)
        if desired < current_replicas:
            limit = calculate_scale_down_limit_with_behaviors(
                current_replicas,
                self.scale_up_events,
                self.scale_down_events,
                self.behavior.scale_down,
                now_ms,
            )
            limit = min(limit, current_replicas)
            minimum_allowed = max(self.min_replicas, limit)
            return max(desired, minimum_allowed)
        return desired

    # -- horizontal.go storeScaleEvent ------------------------------------------------------
    def _store_scale_event(self, prev: int, new: int, now_ms: int) -> None:
        if self.behavior is None:
            return  # "we should not store any event as they will not be used"
        if new > prev:
            events, rules, change = self.scale_up_events, self.behavior.scale_up, new - prev
        else:
            events, rules, change = self.scale_down_events, self.behavior.scale_down, prev - new
        _mark_scale_events_outdated(events, _longest_policy_period(rules), now_ms)
        old_index = -1
        for i, e in enumerate(events):
            if e.outdated:
                old_index = i
        event = ScaleEvent(change, now_ms)
        if old_index >= 0:
            events[old_index] = event
        else:
            events.append(event)
