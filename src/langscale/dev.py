"""``langscale dev`` (what ``make run`` calls): the whole stack on this machine.

A private Redis (unless ``LANGSCALE_REDIS_URL`` is given), the gateway and one worker as
child processes with the offline ``fake`` LLM. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from langscale.localredis import LocalRedis, free_port, start_local_redis
from langscale.settings import BUILTIN_PIPELINES

# The built-in pipelines and rag on the embedded vector store (`langscale ingest <folder>`
# fills it): no server to run. Its similarity search needs numpy, which the dev install has
# and the worker image does not: there, rag is named in LANGSCALE_PIPELINES with a server.
DEV_PIPELINES = ",".join(
    [f"{name}={target}" for name, target in BUILTIN_PIPELINES.items()]
    + ["rag=langscale_worker.pipelines:rag"]
)

BANNER = """
langscale is running: gateway http://{host}:{port}  (API docs: http://{host}:{port}/docs)
  Redis {redis_url}{redis_note}
  worker health and metrics http://127.0.0.1:{worker_port}/healthz, /metrics

  curl -s -X POST http://{host}:{port}/chat/invoke -H 'content-type: application/json' \\
       -d '{{"input": {{"question": "hello"}}}}'
  curl -s -X POST http://{host}:{port}/v1/runs -H 'content-type: application/json' \\
       -d '{{"pipeline": "summarize", "input": {{"text": "A long text..."}}}}'
  python -c 'from langserve import RemoteRunnable; \\
print(RemoteRunnable("http://{host}:{port}/chat").invoke({{"question": "hi"}}))'
  curl -s -X POST http://{host}:{port}/chat_with_history/invoke \\
       -H 'content-type: application/json' \\
       -d '{{"input": {{"question": "hi"}}, "config": {{"configurable": {{"session_id": "t1"}}}}}}'
  langscale ingest docs/ && curl -s -X POST http://{host}:{port}/rag/invoke \\
       -H 'content-type: application/json' -d '{{"input": {{"question": "What is a lease?"}}}}'

Ctrl-C stops everything.
"""


def _wait_until(
    url: str,
    children: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    done: Callable[[bytes], bool] = lambda body: True,
) -> None:
    """Poll ``url`` until it answers 200 with a body ``done`` accepts (or refuses us: auth
    is on, nothing more to learn), failing early if one of ``children`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"{child.args!r} exited with {child.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200 and done(response.read()):
                    return
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} was not ready within {timeout:g} s")


def _stop(children: Sequence[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C: now
            for rest in children:
                if rest.poll() is None:
                    rest.kill()
            child.wait()


def run(host: str = "127.0.0.1", port: int = 8000) -> int:
    env = dict(os.environ)
    env.setdefault("LANGSCALE_LOG_FORMAT", "text")
    env.setdefault("LANGSCALE_PIPELINES", DEV_PIPELINES)
    # Ctrl-C should not wait long: in-flight work gets a few seconds, not a rollout's window.
    env.setdefault("LANGSCALE_GATEWAY_DRAIN_TIMEOUT", "3")
    env.setdefault("LANGSCALE_DRAIN_TIMEOUT", "5")
    redis: LocalRedis | None = None
    if "LANGSCALE_REDIS_URL" not in env:
        redis = start_local_redis(appendonly=True)  # as production should: no warning
        env["LANGSCALE_REDIS_URL"] = redis.url
    # The worker's /healthz and /metrics: loopback only, on a free port, so a second
    # `make run` on this machine does not collide (production keeps 0.0.0.0:9101).
    env.setdefault("LANGSCALE_WORKER_HTTP_HOST", "127.0.0.1")
    env.setdefault("LANGSCALE_WORKER_HTTP_PORT", str(free_port()))
    exe = [sys.executable, "-m", "langscale.cli"]
    children: list[subprocess.Popen[bytes]] = []

    def on_stop_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT explicitly too: a process started in the background by a non-interactive shell
    # (CI, `make run &`) inherits SIGINT ignored, and Python then raises no KeyboardInterrupt,
    # while the children, which install their own handlers, still stop on Ctrl-C.
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    try:
        children.append(subprocess.Popen([*exe, "worker"], env=env))
        children.append(
            subprocess.Popen([*exe, "gateway", "--host", host, "--port", str(port)], env=env)
        )
        _wait_until(f"http://{host}:{port}/readyz", children, timeout=60)
        # ...and until the worker has published its pipelines: the banner's commands work.
        _wait_until(
            f"http://{host}:{port}/v1/pipelines",
            children,
            timeout=60,
            done=lambda body: bool(json.loads(body).get("pipelines")),
        )
        note = " (private, started by langscale dev)" if redis else ""
        print(
            BANNER.format(
                host=host,
                port=port,
                redis_url=env["LANGSCALE_REDIS_URL"],
                redis_note=note,
                worker_port=env["LANGSCALE_WORKER_HTTP_PORT"],
            ),
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("a langscale process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping langscale...", file=sys.stderr)
        return 0
    except RuntimeError as error:
        print(f"langscale dev: {error}", file=sys.stderr)
        return 1
    finally:
        _stop(children)
        if redis:
            redis.stop()
