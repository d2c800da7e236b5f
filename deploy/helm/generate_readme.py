"""Generate the chart's README.md (what `helm show readme` prints) from values.yaml.

    python deploy/helm/generate_readme.py          # write deploy/helm/langscale/README.md
    python deploy/helm/generate_readme.py --check  # exit 1 if it is out of date

The values table comes from the `# --` comments of values.yaml, the convention helm-docs
reads: a comment starting with `# --` right above a key (continued by the `#` lines after
it) documents that key; its default is the key's value in values.yaml. The text around the
table is README.md.gotmpl's. tests/chart/test_chart_readme.py keeps the README in sync.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "langscale"
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.-]*):(\s|$)")
DOC = re.compile(r"^\s*# -- ?(?P<text>.*)$")
MORE = re.compile(r"^\s*#( (?P<text>.*))?$")


def documented_keys(text: str) -> list[tuple[str, str]]:
    """(dotted key, description) in file order, for every key with a `# --` comment."""
    out: list[tuple[str, str]] = []
    path: list[tuple[int, str]] = []
    pending: list[str] | None = None
    in_list = False
    for line in text.splitlines():
        doc = DOC.match(line)
        if doc:
            pending = [doc.group("text").strip()]
            continue
        more = MORE.match(line)
        if more:
            if pending is not None:
                pending.append((more.group("text") or "").strip())
            continue
        if line.lstrip().startswith("- "):
            in_list = True
            pending = None
            continue
        key = KEY.match(line)
        if not key:
            continue
        indent = len(key.group("indent"))
        while path and path[-1][0] >= indent:
            path.pop()
        if in_list and path and indent > path[-1][0] + 2:
            continue  # a key inside a list item: part of its parent's default
        in_list = False
        path.append((indent, key.group("key")))
        if pending is not None:
            out.append((".".join(k for _, k in path), " ".join(p for p in pending if p)))
            pending = None
    return out


def lookup(values: Any, dotted: str) -> Any:
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}[
        type(value)
    ]


def default_text(value: Any) -> str:
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    if len(text) > 120:
        return "see values.yaml"
    return "`" + text.replace("|", "\\|") + "`"


def values_table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for key, description in documented_keys(values_text):
        value = lookup(values, key)
        escaped = description.replace("|", "\\|")
        rows.append(f"| `{key}` | {type_name(value)} | {default_text(value)} | {escaped} |")
    return "\n".join(rows)


def generate() -> str:
    template = (CHART / "README.md.gotmpl").read_text()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    table = values_table((CHART / "values.yaml").read_text())
    return (
        template.replace("{{ version }}", chart["version"])
        .replace("{{ appVersion }}", chart["appVersion"])
        .replace("{{ kubeVersion }}", chart["kubeVersion"])
        .replace("{{ valuesTable }}", table)
    )


def main(argv: list[str]) -> int:
    readme = CHART / "README.md"
    text = generate()
    if "--check" in argv:
        if readme.read_text() != text:
            print(f"{readme} is out of date: run `make chart-readme`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
