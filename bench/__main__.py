"""``python -m bench [pickup|loadgen|all] [options]``.

- ``python -m bench``: the default suite (pickup, then loadgen), under ~10 minutes;
- ``python -m bench --quick``: both, shorter (N = 6×C, shorter load phases);
- ``python -m bench pickup [--quick] ...``: prompt pickup only (issue 2);
- ``python -m bench loadgen [--quick|--full] ...``: gateway load generator and peers (issue 8).

Options after the command go to that benchmark; ``python -m bench pickup --help``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command = argv[0] if argv and not argv[0].startswith("-") else "all"
    rest = argv[1:] if argv and not argv[0].startswith("-") else argv
    if command in ("pickup", "all"):
        from bench import pickup

        pickup.main([a for a in rest if a != "--full"] if command == "all" else rest)
    if command in ("loadgen", "all"):
        from bench import loadgen

        loadgen.main(rest)
    if command not in ("pickup", "loadgen", "all"):
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
