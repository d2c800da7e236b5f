"""The chart's KEDA mode for real: KEDA (built from its Go module, installed from its own
manifests) polls the gateway's /v1/queue with the metrics-api trigger; the HPA it creates
scales the workers 1 → 4 → 1, in step with `langscale autoscale simulate` (kind keda)."""

from __future__ import annotations

from pathlib import Path

from kube import Kube
from scaling import scale_min_max_min

NAMESPACE = "e2e-keda"
RELEASE = "keda"


def test_keda_scales_workers_min_to_max_to_min_on_the_metrics_api_trigger(
    kube: Kube, keda: None, report: dict[str, object], tmp_path: Path
) -> None:
    report["keda_metrics_api"] = scale_min_max_min(kube, "keda", NAMESPACE, RELEASE, tmp_path)
    kube.uninstall(RELEASE, NAMESPACE)
