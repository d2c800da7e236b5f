"""Read the worker autoscaling settings from Helm values, merged the way ``helm`` merges them.

Order: the chart's own ``values.yaml`` (found from the working directory or this package's
checkout, or given explicitly), then each ``--values`` file (later wins; maps merge deeply,
lists are replaced, ``null`` deletes a key), then each ``--set path=value``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .hpa import Behavior, BehaviorError, behavior_from_dict

CHART_VALUES_RELPATH = Path("deploy/helm/langscale/values.yaml")

# The layout of the chart's worker section, used when the chart's values.yaml is not found.
DEFAULT_VALUES: dict[str, Any] = {
    "worker": {
        "replicaCount": 1,
        "concurrency": 100,
        "jobTimeoutSeconds": 300,
        "drainTimeoutSeconds": 330,
        "autoscaling": {
            "enabled": True,
            "kind": "hpa",
            "metric": "backlog",
            "minReplicas": 1,
            "maxReplicas": 20,
            "targetUtilization": 0.8,
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                },
            },
            "keda": {
                "pollingInterval": 15,
                "cooldownPeriod": 300,
                "trigger": "metrics-api",
                "prometheusServerAddress": "",
                "activationThreshold": "",
                "authenticationRef": {},
                "extraTriggerMetadata": {},
                "fallback": {},
            },
        },
    }
}


class ValuesError(ValueError):
    """A values file or --set that cannot be used."""


@dataclass(frozen=True)
class AutoscalingValues:
    concurrency: int
    job_timeout_seconds: float
    drain_timeout_seconds: float
    replica_count: int
    enabled: bool
    kind: str  # hpa | keda
    metric: str  # backlog | ready
    min_replicas: int
    max_replicas: int
    target_utilization: float
    behavior: Behavior | None
    behavior_raw: Any
    keda_polling_interval: float
    keda_cooldown_period: float
    keda_trigger: str
    source: tuple[str, ...]  # files merged, in order

    @property
    def target_per_replica(self) -> float:
        """concurrency x targetUtilization, rounded to a milli-quantity like the chart does."""
        return round(self.concurrency * self.target_utilization * 1000) / 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "jobTimeoutSeconds": self.job_timeout_seconds,
            "drainTimeoutSeconds": self.drain_timeout_seconds,
            "enabled": self.enabled,
            "kind": self.kind,
            "metric": self.metric,
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "targetUtilization": self.target_utilization,
            "targetPerReplica": self.target_per_replica,
            "behavior": self.behavior_raw,
            "keda": {
                "pollingInterval": self.keda_polling_interval,
                "cooldownPeriod": self.keda_cooldown_period,
                "trigger": self.keda_trigger,
            },
            "valuesFiles": list(self.source),
        }


def find_chart_values(start: Path | None = None) -> Path | None:
    """The chart's values.yaml above ``start`` (default: cwd) or above this package."""
    roots = [start or Path.cwd(), Path(__file__).resolve()]
    for root in roots:
        for d in [root, *root.parents]:
            candidate = d / CHART_VALUES_RELPATH
            if candidate.is_file():
                return candidate
    return None


def merge(base: Any, override: Any) -> Any:
    """Helm's coalesce: maps merge recursively, anything else replaces, None deletes."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            if value is None:
                out[key] = None  # kept as an explicit null: "remove this setting"
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def load_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValuesError(f"cannot read values file {p}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValuesError(f"values file {p} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValuesError(f"values file {p} must be a YAML mapping, got {type(data).__name__}")
    return data


_SEGMENT = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


def _split_set(expr: str) -> list[tuple[str, str]]:
    """Split ``a=1,b.c=2`` on commas that start a new ``key=`` (values may hold commas)."""
    out: list[tuple[str, str]] = []
    for part in re.split(r",(?=[A-Za-z0-9_.\[\]-]+=)", expr):
        if "=" not in part:
            raise ValuesError(f"--set {expr!r}: expected path=value")
        key, value = part.split("=", 1)
        if not key:
            raise ValuesError(f"--set {expr!r}: empty key")
        out.append((key.strip(), value))
    return out


def apply_set(values: dict[str, Any], expr: str) -> dict[str, Any]:
    """Apply one ``--set`` (helm syntax subset: dots, ``[i]`` list indexes, commas)."""
    result = copy.deepcopy(values)
    for key, raw in _split_set(expr):
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        path: list[str | int] = []
        for seg in key.split("."):
            m = _SEGMENT.match(seg)
            if not m:
                raise ValuesError(f"--set {key!r}: bad path segment {seg!r}")
            path.append(m.group(1))
            path.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
        node: Any = result
        for i, part in enumerate(path):
            if isinstance(part, str):
                if not isinstance(node, dict):
                    raise ValuesError(f"--set {key!r}: {part!r} is not inside a mapping")
            else:
                if not isinstance(node, list):
                    raise ValuesError(f"--set {key!r}: index [{part}] on a non-list")
                node.extend([None] * (part + 1 - len(node)))
            if i == len(path) - 1:
                node[part] = value
                break
            want: type = list if isinstance(path[i + 1], int) else dict
            child = node.get(part) if isinstance(node, dict) else node[part]
            if not isinstance(child, want):
                node[part] = want()
            node = node[part]
    return result


def load_values(
    values_files: Sequence[str | Path] = (),
    set_exprs: Sequence[str] = (),
    chart_values: str | Path | None = "auto",
    pool: str = "default",
) -> AutoscalingValues:
    """Merge chart defaults, ``--values`` files and ``--set``s; extract the settings of a
    worker pool: ``default`` (the chart's ``worker``) or the name of a ``workerPools``
    entry, whose keys are deep-merged over ``worker``'s as the chart does."""
    merged: Any = copy.deepcopy(DEFAULT_VALUES)
    sources: list[str] = []
    if chart_values == "auto":
        found = find_chart_values()
        if found is not None:
            merged = merge(merged, load_file(found))
            sources.append(str(found))
    elif chart_values not in (None, "", "none"):
        assert chart_values is not None
        merged = merge(merged, load_file(chart_values))
        sources.append(str(chart_values))
    for f in values_files:
        merged = merge(merged, load_file(f))
        sources.append(str(f))
    for expr in set_exprs:
        merged = apply_set(merged, expr)
    return extract(pool_values(merged, pool), tuple(sources))


def pool_values(values: Any, pool: str) -> Any:
    """The values with ``worker`` replaced by one pool's (the chart's merge)."""
    if pool == "default":
        return values
    pools = _get(values, "workerPools") or []
    entry = next((p for p in pools if isinstance(p, Mapping) and p.get("name") == pool), None)
    if entry is None:
        names = ", ".join(
            ["default", *(str(p.get("name")) for p in pools if isinstance(p, Mapping))]
        )
        raise ValuesError(f"no worker pool named {pool!r} (pools: {names})")
    worker = merge(
        _get(values, "worker") or {},
        {k: v for k, v in entry.items() if k not in ("name", "pipelines")},
    )
    return {**values, "worker": worker}


def _get(d: Any, path: str) -> Any:
    node = d
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _number(d: Any, path: str, *, integer: bool = False, minimum: float | None = None) -> Any:
    v = _get(d, path)
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ValuesError(f"{path} must be a number, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValuesError(f"{path} must be a number, got {v!r}")
    if integer:
        if float(v) != int(v):
            raise ValuesError(f"{path} must be an integer, got {v!r}")
        v = int(v)
    if minimum is not None and v < minimum:
        raise ValuesError(f"{path} must be >= {minimum}, got {v!r}")
    return v


def extract(values: Any, sources: tuple[str, ...] = ()) -> AutoscalingValues:
    if not isinstance(_get(values, "worker"), Mapping):
        raise ValuesError("values have no worker section")
    a = "worker.autoscaling"
    if not isinstance(_get(values, a), Mapping):
        raise ValuesError(f"{a} must be a mapping")
    kind = _get(values, f"{a}.kind")
    if kind not in ("hpa", "keda"):
        raise ValuesError(f"{a}.kind must be hpa or keda, got {kind!r}")
    metric = _get(values, f"{a}.metric")
    if metric not in ("backlog", "ready"):
        raise ValuesError(f"{a}.metric must be backlog or ready, got {metric!r}")
    enabled = _get(values, f"{a}.enabled")
    if not isinstance(enabled, bool):
        raise ValuesError(f"{a}.enabled must be true or false, got {enabled!r}")
    min_r = _number(values, f"{a}.minReplicas", integer=True, minimum=0)
    max_r = _number(values, f"{a}.maxReplicas", integer=True, minimum=1)
    if min_r > max_r:
        raise ValuesError(f"{a}.minReplicas ({min_r}) is above maxReplicas ({max_r})")
    if min_r == 0 and kind == "hpa":
        raise ValuesError(f"{a}.minReplicas 0 needs kind keda (a plain HPA cannot scale to zero)")
    target = float(_number(values, f"{a}.targetUtilization"))
    if target <= 0:
        raise ValuesError(f"{a}.targetUtilization must be positive, got {target}")
    raw_behavior = _get(values, f"{a}.behavior")
    try:
        behavior = behavior_from_dict(raw_behavior)
    except BehaviorError as exc:
        raise ValuesError(f"{a}.behavior: {exc}") from exc
    trigger = _get(values, f"{a}.keda.trigger") or "metrics-api"
    if trigger not in ("metrics-api", "prometheus"):
        raise ValuesError(f"{a}.keda.trigger must be metrics-api or prometheus, got {trigger!r}")
    polling = _get(values, f"{a}.keda.pollingInterval")
    cooldown = _get(values, f"{a}.keda.cooldownPeriod")
    out = AutoscalingValues(
        concurrency=_number(values, "worker.concurrency", integer=True, minimum=1),
        job_timeout_seconds=float(_number(values, "worker.jobTimeoutSeconds", minimum=0)),
        drain_timeout_seconds=float(_number(values, "worker.drainTimeoutSeconds", minimum=0)),
        replica_count=int(_get(values, "worker.replicaCount") or 1),
        enabled=enabled,
        kind=kind,
        metric=metric,
        min_replicas=min_r,
        max_replicas=max_r,
        target_utilization=target,
        behavior=behavior,
        behavior_raw=copy.deepcopy(raw_behavior),
        keda_polling_interval=float(
            30 if polling is None else _number(values, f"{a}.keda.pollingInterval", minimum=1)
        ),
        keda_cooldown_period=float(
            300 if cooldown is None else _number(values, f"{a}.keda.cooldownPeriod", minimum=0)
        ),
        keda_trigger=trigger,
        source=sources,
    )
    if out.target_per_replica <= 0:
        raise ValuesError("concurrency x targetUtilization rounds to zero")
    return out
