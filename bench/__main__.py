"""``python -m bench [pickup|loadgen|memory|ceiling|all] [options]``.

- ``python -m bench``: the default suite (pickup, loadgen, pools, then memory), ~14 minutes;
- ``python -m bench --quick``: all four, shorter (N = 6×C, shorter load phases);
- ``python -m bench pickup [--quick] ...``: prompt pickup only (issue 2);
- ``python -m bench loadgen [--quick|--full] ...``: gateway load generator and peers (issue 8);
- ``python -m bench pools ...``: claim cost, 20 pipelines in one pool vs 4 pools (issue 13);
- ``python -m bench webhooks [--kill-gateway] ...``: webhook latency and losses under SIGKILL;
- ``python -m bench memory [--quick] ...``: Redis bytes per finished run, arq as the peer;
- ``python -m bench ceiling [--quick] ...``: the throughput ceiling at latency 0 over worker
  and gateway processes, one Redis vs a 3-master cluster (not in the default suite).

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
    if command in ("pools", "all"):
        from bench import pools

        quick = ["--runs", "2000"] if "--quick" in rest else []
        pools.main(rest if command == "pools" else quick)
    if command == "webhooks":
        from bench import webhooks

        webhooks.main(rest)
    if command in ("memory", "all"):
        from bench import memory

        memory.main([a for a in rest if a == "--quick"] if command == "all" else rest)
    if command == "ceiling":
        from bench import ceiling

        ceiling.main(rest)
    if command not in ("pickup", "loadgen", "pools", "webhooks", "memory", "ceiling", "all"):
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
