"""Keep the lines of a `uv export` requirements file whose markers hold for a target Python.

    python select-requirements.py PYTHON_VERSION < requirements.txt > selected.txt
    python select-requirements.py --union A.txt B.txt > both.txt   # one entry per package

`pip download --python-version` does not evaluate python_full_version markers for the target
(a host Python 3.11.7 drops `async-timeout ; python_full_version < '3.11.3'`, which Debian's
3.11.2 needs): evaluate them here for CPython PYTHON_VERSION on Linux, and drop the markers.
"""

from __future__ import annotations

import sys

from pip._vendor.packaging.markers import Marker


def main(version: str) -> None:
    environment = {
        "python_full_version": version,
        "python_version": ".".join(version.split(".")[:2]),
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
    }
    keep = True
    for line in sys.stdin.read().splitlines():
        if line and not line.startswith((" ", "#")):  # a requirement, hashes follow indented
            requirement, _, marker = line.rstrip(" \\").partition(" ; ")
            keep = not marker or Marker(marker).evaluate(environment)
            if keep:
                print(requirement + (" \\" if line.endswith("\\") else ""))
        elif keep:
            print(line)


def union(paths: list[str]) -> None:
    """The requirements of several files, each package once (for one `pip download`)."""
    blocks: dict[str, list[str]] = {}
    for path in paths:
        current: list[str] | None = None
        with open(path) as lines:
            for line in lines.read().splitlines():
                if line and not line.startswith((" ", "#")):
                    name = line.split("==")[0].strip().lower()
                    current = None if name in blocks else blocks.setdefault(name, [])
                if current is not None and not line.startswith("#"):
                    current.append(line)
    for block in blocks.values():
        print("\n".join(block))


if __name__ == "__main__":
    if sys.argv[1] == "--union":
        union(sys.argv[2:])
    else:
        main(sys.argv[1])
