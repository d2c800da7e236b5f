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


def _ingest(args: argparse.Namespace) -> int:
    from langscale.settings import load_settings
    from langscale_worker.ingest import run

    return run(load_settings(), args.paths, args.chunk_size, args.chunk_overlap)


def _hash_key(args: argparse.Namespace) -> int:
    import hashlib

    key = args.key
    if key in (None, "-"):
        if sys.stdin.isatty():
            import getpass

            key = getpass.getpass("API key (not echoed): ")
        else:
            key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        sys.stderr.write("langscale hash-key: the key is empty\n")
        return 2
    print(hashlib.sha256(key.encode()).hexdigest())
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
    from langscale import __version__

    parser = argparse.ArgumentParser(
        prog="langscale",
        description="Run LangChain applications under real load: an HTTP gateway, a Redis "
        "queue and async workers. Settings come from LANGSCALE_* environment variables "
        "(README.md, Settings).",
    )
    parser.add_argument("--version", action="version", version=f"langscale {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter

    gateway = commands.add_parser(
        "gateway",
        help="run the HTTP gateway",
        description="The HTTP gateway (uvicorn): the runs API, LangServe-compatible routes, "
        "/metrics, /docs. It reads LANGSCALE_REDIS_URL and the other LANGSCALE_* settings.",
        formatter_class=defaults,
    )
    gateway.add_argument("--host", default="127.0.0.1", help="address to listen on")
    gateway.add_argument("--port", type=int, default=8000, help="port to listen on")
    gateway.set_defaults(func=_gateway)

    worker = commands.add_parser(
        "worker",
        help="run a worker (settings: LANGSCALE_*)",
        description="A worker process: it serves the pipelines of LANGSCALE_PIPELINES "
        "(default: the built-in chat, summarize and embed) for LANGSCALE_WORKER_POOL, runs "
        "LANGSCALE_WORKER_CONCURRENCY runs at once, and serves /healthz and /metrics on "
        "LANGSCALE_WORKER_HTTP_HOST:LANGSCALE_WORKER_HTTP_PORT (0.0.0.0:9101).",
        formatter_class=defaults,
    )
    worker.set_defaults(func=_worker)

    dev = commands.add_parser(
        "dev",
        help="run Redis, a gateway and a worker locally",
        description="The whole stack on this machine (what `make run` calls): a private "
        "Redis unless LANGSCALE_REDIS_URL is set, the gateway on --host:--port and one "
        "worker whose /healthz and /metrics listen on 127.0.0.1 on a free port. Ctrl-C "
        "stops everything.",
        formatter_class=defaults,
    )
    dev.add_argument("--host", default="127.0.0.1", help="address the gateway listens on")
    dev.add_argument("--port", type=int, default=8000, help="port the gateway listens on")
    dev.set_defaults(func=_dev)

    ingest = commands.add_parser(
        "ingest",
        help="load files or folders into the rag pipeline's vector store "
        "(LANGSCALE_VECTOR_STORE_URL, else the embedded store)",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    ingest.add_argument("--chunk-size", type=int, default=1000, help="characters per chunk")
    ingest.add_argument("--chunk-overlap", type=int, default=100, help="characters shared")
    ingest.set_defaults(func=_ingest)

    hash_key = commands.add_parser(
        "hash-key",
        help="print the SHA-256 of an API key, for LANGSCALE_API_KEYS",
        description="Print the SHA-256 of an API key. Without KEY (or with -) the key is "
        "read from standard input (prompted for, unechoed, on a terminal), so it stays out "
        "of the shell history.",
        formatter_class=defaults,
    )
    hash_key.add_argument("key", nargs="?", default=None, help="the key; - or none: stdin")
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
