"""``langscale dev`` (what ``make run`` calls): the whole stack on this machine.

A private Redis (unless ``LANGSCALE_REDIS_URL`` is given), the gateway and one worker as
child processes with the offline ``fake`` LLM. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

from langscale.localredis import LocalRedis, start_local_redis

BANNER = """
langscale is running: gateway http://{host}:{port}  (API docs: http://{host}:{port}/docs)
  Redis {redis_url}{redis_note}

  curl -s -X POST http://{host}:{port}/chat/invoke -H 'content-type: application/json' \\
       -d '{{"input": {{"question": "hello"}}}}'
  curl -s -X POST http://{host}:{port}/v1/runs -H 'content-type: application/json' \\
       -d '{{"pipeline": "summarize", "input": {{"text": "A long text..."}}}}'
  python -c 'from langserve import RemoteRunnable; \\
print(RemoteRunnable("http://{host}:{port}/chat").invoke({{"question": "hi"}}))'

Ctrl-C stops everything.
"""


def _wait_ready(url: str, children: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.poll() is not None:
                raise RuntimeError(f"{child.args!r} exited with {child.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
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
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(host: str = "127.0.0.1", port: int = 8000) -> int:
    env = dict(os.environ)
    env.setdefault("LANGSCALE_LOG_FORMAT", "text")
    redis: LocalRedis | None = None
    if "LANGSCALE_REDIS_URL" not in env:
        redis = start_local_redis(appendonly=True)  # as production should: no warning
        env["LANGSCALE_REDIS_URL"] = redis.url
    exe = [sys.executable, "-m", "langscale.cli"]
    children: list[subprocess.Popen[bytes]] = []

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        children.append(subprocess.Popen([*exe, "worker"], env=env))
        children.append(
            subprocess.Popen([*exe, "gateway", "--host", host, "--port", str(port)], env=env)
        )
        _wait_ready(f"http://{host}:{port}/readyz", children, timeout=60)
        note = " (private, started by langscale dev)" if redis else ""
        print(
            BANNER.format(
                host=host, port=port, redis_url=env["LANGSCALE_REDIS_URL"], redis_note=note
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
