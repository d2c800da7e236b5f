"""The chart README (`helm show readme`) is generated from values.yaml's `# --` comments
(deploy/helm/generate_readme.py, `make chart-readme`) and kept in sync here."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import yaml
from chart_support import CHART_DIR, REPO_ROOT, helm_binary


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_readme", REPO_ROOT / "deploy" / "helm" / "generate_readme.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_what_the_generator_writes() -> None:
    assert (CHART_DIR / "README.md").read_text() == generator().generate(), (
        "deploy/helm/langscale/README.md is out of date: run `make chart-readme`"
    )


def test_helm_show_readme_prints_the_values_table() -> None:
    shown = helm_binary("show", "readme", str(CHART_DIR)).stdout
    assert "## Values" in shown
    assert "| `worker.autoscaling.targetUtilization` | float | `0.8` |" in shown


def test_every_leaf_value_outside_verbatim_blocks_is_in_the_table() -> None:
    documented = {
        key for key, _ in generator().documented_keys((CHART_DIR / "values.yaml").read_text())
    }
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def leaves(node: object, prefix: str) -> list[str]:
        if prefix in documented:
            return []
        if isinstance(node, dict) and node:
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{prefix}.{k}".strip("."))]
        return [prefix]

    assert [leaf for leaf in leaves(values, "") if leaf] == []


def test_the_parser_attaches_comments_to_keys_and_skips_list_items() -> None:
    text = (
        "# -- a\n# more\nalpha: 1\nbeta:\n  # -- b\n  gamma:\n    - x: 1\n      y: 2\n"
        "  # -- d\n  delta: 2\n"
    )
    assert generator().documented_keys(text) == [
        ("alpha", "a more"),
        ("beta.gamma", "b"),
        ("beta.delta", "d"),
    ]
