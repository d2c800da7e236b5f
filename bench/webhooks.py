"""Webhook deliveries: latency after a run's end, and deliveries lost when workers (and a
gateway, the deliverer) are killed with SIGKILL mid-load.

Runs with a webhook go through a real gateway and real workers to a receiver on loopback
that records each delivery's arrival. Midway, a worker is killed with SIGKILL (its runs
are swept after the lease and run again elsewhere) and restarted, and so is the gateway
(the deliveries it had taken are taken again after their lease). Every run that ended must
have its delivery: "lost" counts ended runs whose webhook never arrived.

    python -m bench.webhooks [--runs 400]
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bench.common import (
    langscale_gateway,
    langscale_worker,
    latency_summary,
    machine_info,
    md_table,
    write_results,
)
from langscale.localredis import free_port, start_local_redis

SECRET = "whsec_" + base64.b64encode(b"bench-webhook-secret-012345").decode()


class Receiver:
    """A webhook receiver on loopback (the benchmark's and the tests'): records each POST
    (headers, body) and its arrival time per webhook-id; answers 500 to the first
    ``failures`` POSTs, 204 to the others."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrivals: dict[str, list[float]] = {}
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append((headers, body))
                    run_id = headers.get("webhook-id", "").partition(".")[0]
                    arrivals = receiver.arrivals.setdefault(run_id, [])
                    arrivals.append(time.time())
                    failing = receiver.failures > 0
                    receiver.failures -= 1
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_run(self, run_id: str) -> list[tuple[dict[str, str], bytes]]:
        return [
            (h, b) for h, b in self.received if h.get("webhook-id", "").partition(".")[0] == run_id
        ]


def run(runs: int, kill_gateway: bool) -> dict[str, Any]:
    redis = start_local_redis()
    receiver = Receiver()
    settings = {
        "fake_latency": 0.3,
        "lease_seconds": 2,
        "crash_isolation": "false",
        "max_attempts": 5,
        "worker_http_port": 0,
        "webhook_secrets": f"*={SECRET}",
        "webhook_allowed_hosts": "127.0.0.1",
        "admission_max_ready": 0,
    }
    port = free_port()
    gateway = langscale_gateway("wh-gateway", redis.url, port, **settings).start()
    workers = [langscale_worker(f"wh-worker-{i}", redis.url, **settings).start() for i in range(2)]
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=30)
    kills: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if client.get("/readyz").json().get("workers", 0) >= 2:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("stack not ready")
            time.sleep(0.2)
        ids: list[str] = []
        for i in range(runs):
            body = {"pipeline": "chat", "input": {"question": f"q{i}"}, "webhook": receiver.url}
            for _ in range(300):
                try:
                    response = client.post(
                        "/v1/runs", json=body, headers={"idempotency-key": f"b{i}"}
                    )
                    if response.status_code == 202:
                        ids.append(response.json()["run_id"])
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            if i == runs // 3:
                workers[0].popen.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                workers[0].popen.wait()  # type: ignore[union-attr]
                kills.append("worker")
                workers[0] = langscale_worker("wh-worker-0b", redis.url, **settings).start()
            if kill_gateway and i == 2 * runs // 3:
                gateway.popen.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                gateway.popen.wait()  # type: ignore[union-attr]
                kills.append("gateway")
                gateway = langscale_gateway("wh-gateway-b", redis.url, port, **settings).start()
            time.sleep(0.005)
        finished: dict[str, float] = {}
        states: dict[str, int] = {}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            pending = [r for r in ids if r not in finished]
            for run_id in pending:
                try:
                    record = client.get(f"/v1/runs/{run_id}").json()
                except (httpx.HTTPError, ValueError):
                    break
                if record.get("finished_at"):
                    finished[run_id] = record["finished_at"]
                    states[record["state"]] = states.get(record["state"], 0) + 1
            if len(finished) == len(ids) and all(r in receiver.arrivals for r in ids):
                break
            time.sleep(1)
        time.sleep(2)  # late duplicates, if any
        latencies = [
            receiver.arrivals[r][0] - finished[r] for r in finished if r in receiver.arrivals
        ]
        metrics = client.get("/metrics").text
        return {
            "runs": len(ids),
            "ended": len(finished),
            "states": states,
            "delivered": sum(1 for r in finished if r in receiver.arrivals),
            "lost": sum(1 for r in finished if r not in receiver.arrivals),
            "duplicates": sum(len(v) - 1 for v in receiver.arrivals.values()),
            "killed": kills,
            "latency_seconds": latency_summary(latencies),
            "gateway_metrics": [
                line
                for line in metrics.splitlines()
                if line.startswith("langscale_webhook_deliveries_total")
            ],
        }
    finally:
        client.close()
        for process in [gateway, *workers]:
            process.stop()
        redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument(
        "--kill-gateway",
        action="store_true",
        help="also SIGKILL the gateway (the deliverer) at 2/3: deliveries it held wait "
        "for their lease (LANGSCALE_WEBHOOK_TIMEOUT + 5 s) and its restart",
    )
    args = parser.parse_args(argv)
    result = run(args.runs, args.kill_gateway)
    latency = result["latency_seconds"]
    markdown = (
        "# Webhook deliveries under SIGKILL\n\n"
        f"{result['runs']} runs (fake LLM 0.3 s, lease 2 s) with a webhook to a receiver on "
        "loopback; killed with SIGKILL and restarted: "
        f"{', '.join(result['killed'])} (a worker at 1/3 of the submissions"
        + (", the gateway, which delivers, at 2/3" if "gateway" in result["killed"] else "")
        + "). Latency: from the run's end (Redis time) to the receiver.\n\n"
        + md_table(
            [
                "runs ended",
                "delivered",
                "lost",
                "duplicates",
                "latency p50 (ms)",
                "p99 (ms)",
                "max (ms)",
            ],
            [
                [
                    result["ended"],
                    result["delivered"],
                    result["lost"],
                    result["duplicates"],
                    latency.get("p50_ms"),
                    latency.get("p99_ms"),
                    latency.get("max_ms"),
                ]
            ],
        )
    )
    name = "webhooks-gateway-killed" if args.kill_gateway else "webhooks"
    write_results(name, {"machine": machine_info(), **result}, markdown)
    print(markdown)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
