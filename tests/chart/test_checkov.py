"""checkov (offline) on the rendered chart: no failed check. Deliberate skips are justified in
deploy/helm/langscale/.checkov.yaml (global) and as checkov.io/skipN annotations on the
`helm test` pod. checkov is slow, so it runs once per session on two renders: the defaults and
a full-featured one (monitoring, ingress, auth, KEDA)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chart_support import CHART_DIR, deep_merge, load_values


def checkov_command() -> list[str]:
    beside = Path(sys.executable).with_name("checkov")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("checkov")
    if found is None:
        pytest.skip("checkov is not installed (uv dependency group 'chart')")
    return [found]


@pytest.fixture(scope="session")
def checkov_report(render: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    full: dict[str, Any] = {}
    for name in ("monitoring", "ingress", "auth", "keda"):
        full = deep_merge(full, load_values(CHART_DIR / "ci" / f"{name}-values.yaml"))
    out = tmp_path_factory.mktemp("rendered")
    for label, values in (("default", {}), ("full", full)):
        manifests = render(values).manifests
        docs = [
            text
            for path, text in sorted(manifests.items())
            if not path.endswith("NOTES.txt") and text.strip()
        ]
        (out / f"{label}.yaml").write_text("\n---\n".join(docs))
    result = subprocess.run(
        [
            *checkov_command(),
            "-d",
            str(out),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "--config-file",
            str(CHART_DIR / ".checkov.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})"
        for c in checkov_report.get("results", {}).get("failed_checks", [])
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 300
    assert summary["resource_count"] >= 30


def test_every_global_skip_is_justified() -> None:
    lines = (CHART_DIR / ".checkov.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("- CKV"):
            assert lines[index - 1].strip().startswith("#"), f"unjustified skip: {line.strip()}"
