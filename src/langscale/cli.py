"""The ``langscale`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _gateway(args: argparse.Namespace) -> int:
    from langscale.logs import configure_logging
    from langscale.settings import get_settings
    from langscale_gateway.app import run

    settings = get_settings()
    configure_logging(settings, "gateway")
    run(settings, args.host, args.port)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from langscale.logs import configure_logging
    from langscale.settings import get_settings
    from langscale_worker.main import run

    settings = get_settings()
    configure_logging(settings, "worker")
    run(settings)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from langscale.dev import run

    return run(args.host, args.port)


def _hash_key(args: argparse.Namespace) -> int:
    import hashlib

    print(hashlib.sha256(args.key.encode()).hexdigest())
    return 0


def _autoscale(args: argparse.Namespace) -> int:
    try:
        from langscale.autoscale.cli import main as autoscale_main
    except ImportError as error:
        sys.stderr.write(
            f"langscale autoscale needs the autoscale extra ({error.name} is missing): "
            "pip install 'langscale[autoscale]'\n"
        )
        return 2
    return autoscale_main(args.args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langscale", description="Run LangChain applications under real load."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gateway = commands.add_parser("gateway", help="run the HTTP gateway")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8000)
    gateway.set_defaults(func=_gateway)

    worker = commands.add_parser("worker", help="run a worker (settings: LANGSCALE_*)")
    worker.set_defaults(func=_worker)

    dev = commands.add_parser("dev", help="run Redis, a gateway and a worker locally")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(func=_dev)

    hash_key = commands.add_parser(
        "hash-key", help="print the SHA-256 of an API key, for LANGSCALE_API_KEYS"
    )
    hash_key.add_argument("key")
    hash_key.set_defaults(func=_hash_key)

    # The simulator needs numpy and matplotlib (the `autoscale` extra, not in the service
    # images): its parser is built, and they are imported, only when it runs.
    autoscale = commands.add_parser(
        "autoscale",
        help="autoscaling tools: simulate the worker HPA / KEDA (extra: langscale[autoscale])",
        add_help=False,
    )
    autoscale.add_argument("args", nargs=argparse.REMAINDER)
    autoscale.set_defaults(func=_autoscale)

    from langscale.doctor import add_parser as add_doctor

    add_doctor(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
