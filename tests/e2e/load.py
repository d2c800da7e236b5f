"""Load for the autoscaling tests: runs submitted on a fixed schedule, and a trace of what
the autoscaler did about them (replicas, Ready pods, the gateway's backlog), one sample a
second."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from kube import Kube


@dataclass
class Sample:
    t: float  # seconds since the trace started
    spec: int  # Deployment spec.replicas (what the autoscaler set)
    ready: int  # Ready pods
    backlog: float | None


@dataclass
class Trace:
    t0: float = field(default_factory=time.time)
    arrivals: list[float] = field(default_factory=list)  # seconds since t0
    run_ids: list[str] = field(default_factory=list)
    refused: int = 0
    samples: list[Sample] = field(default_factory=list)

    def first(self, predicate: Any) -> Sample | None:
        return next((s for s in self.samples if predicate(s)), None)

    def spec_at(self, t: float) -> int:
        """spec.replicas as last sampled at or before t."""
        before = [s for s in self.samples if s.t <= t]
        return before[-1].spec if before else self.samples[0].spec


class Load:
    """Submit `rate` runs a second (evenly spaced) for `seconds`, and sample the fleet."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        deployment: str,
        gateway_url: str,
        rate: float,
        seconds: float,
        pipeline: str = "chat",
    ) -> None:
        self.kube, self.namespace, self.deployment = kube, namespace, deployment
        self.url, self.rate, self.seconds, self.pipeline = gateway_url, rate, seconds, pipeline
        self.trace = Trace()
        self.stop = threading.Event()
        self.submitter = threading.Thread(target=self._submit, daemon=True)
        self.sampler = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> Load:
        self.trace.t0 = time.time()
        self.sampler.start()
        self.submitter.start()
        return self

    def submitted(self) -> bool:
        return not self.submitter.is_alive()

    def close(self) -> None:
        self.stop.set()
        self.submitter.join(timeout=30)
        self.sampler.join(timeout=30)

    def _submit(self) -> None:
        count = round(self.rate * self.seconds)
        with httpx.Client(timeout=10) as client:
            for index in range(count):
                due = self.trace.t0 + index / self.rate
                delay = due - time.time()
                if delay > 0 and self.stop.wait(delay):
                    return
                body = {"pipeline": self.pipeline, "input": {"question": f"load {index}"}}
                response = client.post(f"{self.url}/v1/runs", json=body)
                if response.status_code == 202:
                    self.trace.arrivals.append(time.time() - self.trace.t0)
                    self.trace.run_ids.append(response.json()["run_id"])
                else:
                    self.trace.refused += 1

    def _sample(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                started = time.time()
                try:
                    deployment = self.kube.deployment(self.namespace, self.deployment)
                    backlog: float | None = float(
                        client.get(f"{self.url}/v1/queue").json()["backlog"]
                    )
                except Exception:
                    backlog = None
                self.trace.samples.append(
                    Sample(
                        t=started - self.trace.t0,
                        spec=int(deployment.spec.replicas or 0),
                        ready=int(deployment.status.ready_replicas or 0),
                        backlog=backlog,
                    )
                )
                self.stop.wait(max(0.0, 1.0 - (time.time() - started)))


def run_states(url: str, run_ids: list[str]) -> dict[str, int]:
    """How many of the runs are in each state now."""
    counts: dict[str, int] = {}
    with httpx.Client(timeout=10) as client:
        for run_id in run_ids:
            state = client.get(f"{url}/v1/runs/{run_id}").json().get("state", "unknown")
            counts[state] = counts.get(state, 0) + 1
    return counts


def pod_startup_seconds(kube: Kube, namespace: str, selector: str, after: float) -> list[float]:
    """Seconds from creation to Ready of the pods created after `after` (epoch)."""
    out = []
    for pod in kube.pods(namespace, selector):
        created = pod.metadata.creation_timestamp.timestamp()
        if created < after:
            continue
        for condition in pod.status.conditions or []:
            if condition.type == "Ready" and condition.status == "True":
                out.append(condition.last_transition_time.timestamp() - created)
    return sorted(out)


def final_states(url: str, run_ids: list[str], timeout: float = 240) -> dict[str, int]:
    """Wait until none of the runs is queued or running; their states then (a run the
    gateway no longer knows counts as "unknown": lost)."""
    from kube import poll

    def settled() -> dict[str, int] | None:
        states = run_states(url, run_ids)
        return None if states.get("queued") or states.get("running") else states

    return dict(poll(settled, timeout, "every run ended"))
