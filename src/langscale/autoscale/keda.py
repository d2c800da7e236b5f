"""KEDA's ScaledObject on top of the HPA algorithm.

KEDA creates an ``autoscaling/v2`` HPA with an External metric and an AverageValue target
(``metricType: AverageValue``), minReplicas = max(minReplicaCount, 1), and the chart's
``behavior`` (``advanced.horizontalPodAutoscalerConfig``): between 1 and maxReplicaCount the
HPA algorithm in :mod:`.hpa` decides. KEDA's operator itself only does the 0 <-> 1 part, every
``pollingInterval`` (pkg/scaling/executor/scale_scaledobjects.go ``RequestScale``):

* a trigger is *active* when its metric is above ``activationTargetValue`` (default 0);
* replicas 0 and active -> scale to max(minReplicaCount, 1) (``scaleFromZeroOrIdle``);
* active -> ``status.lastActiveTime = now``;
* not active, replicas > 0, minReplicaCount 0 and lastActiveTime + cooldownPeriod passed (or
  never active) -> scale to 0 (``scaleToZeroOrIdle``);
* not active and replicas < minReplicaCount -> scale to minReplicaCount.

While replicas are 0 the HPA does nothing ("scaling is disabled since the replica count of
the target is zero").
"""

from __future__ import annotations

from dataclasses import dataclass

from .hpa import Behavior, HorizontalPodAutoscaler


@dataclass
class KedaScaledObject:
    min_replica_count: int
    max_replica_count: int
    target_value: float
    behavior: Behavior | None
    polling_interval: float = 30.0  # KEDA's default; the chart sets 15
    cooldown_period: float = 300.0
    activation_target_value: float = 0.0
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        self.hpa = HorizontalPodAutoscaler(
            min_replicas=max(self.min_replica_count, 1),
            max_replicas=self.max_replica_count,
            target_average_value=self.target_value,
            behavior=self.behavior,
            tolerance=self.tolerance,
        )
        self.last_active_time: float | None = None

    def poll(self, now: float, metric_value: float, current_replicas: int) -> int:
        """One KEDA scale loop iteration; returns the replica count KEDA sets (or keeps)."""
        active = metric_value > self.activation_target_value
        if active:
            self.last_active_time = now
            if current_replicas == 0:
                return max(self.min_replica_count, 1)
            return current_replicas
        if current_replicas > 0 and self.min_replica_count == 0:
            if self.last_active_time is None or (
                self.last_active_time + self.cooldown_period < now
            ):
                return 0
            return current_replicas
        if current_replicas < self.min_replica_count:
            return self.min_replica_count
        return current_replicas

    def hpa_step(self, now: float, metric_value: float, current_replicas: int) -> int:
        """The HPA KEDA created, one sync."""
        return self.hpa.step(now, metric_value, current_replicas)
