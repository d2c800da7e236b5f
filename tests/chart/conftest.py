"""Fixtures for the chart tests (helpers in chart_support.py).

``render`` goes through helm-python-sdk (``helm_python``): Helm 4's Go SDK as a shared
library (libhelm_c) called with ctypes. ``Chart.render`` runs what ``helm template`` runs:
values coalescing, values.schema.json validation, the templates and their ``fail`` calls.
The real helm and kubectl binaries (chart_support.helm_template, ``kubectl``) check the same
renders the way users run them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from chart_support import CHART_DIR, NAMESPACE, RELEASE, Rendered, kube_binary

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk is not installed (uv dependency group 'chart')"
)


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[..., Rendered]:
    cache: dict[str, Rendered] = {}

    def _render(values: dict[str, Any] | None = None, **kwargs: Any) -> Rendered:
        key = yaml.safe_dump(values or {}, sort_keys=True) + repr(sorted(kwargs.items()))
        if key not in cache:
            cache[key] = Rendered(
                chart.render(
                    values or {},
                    name=kwargs.get("name", RELEASE),
                    namespace=kwargs.get("namespace", NAMESPACE),
                )
            )
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def render_error(chart: Any) -> Callable[[dict[str, Any]], str]:
    """Render values that must be rejected; returns the error message."""

    def _render_error(values: dict[str, Any]) -> str:
        with pytest.raises(helm.HelmError) as caught:
            chart.render(values, name=RELEASE, namespace=NAMESPACE)
        return str(caught.value)

    return _render_error


@pytest.fixture(scope="session")
def kubectl() -> str:
    return kube_binary("kubectl")
