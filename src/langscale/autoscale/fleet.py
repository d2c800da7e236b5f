"""The queue and the worker fleet, advanced in fixed steps of ``dt`` seconds.

* One FIFO queue (the Redis list). A worker pod takes jobs while it has fewer than
  ``concurrency`` in hand; pick-up is immediate (our worker does not poll every 0.5 s).
* A pod requested at time t takes jobs from t + startup_seconds (image pull, start, readiness).
* Scale-down removes not-yet-ready pods first (newest first), then ready pods, as the
  ReplicaSet controller ranks them. A removed ready pod takes no new jobs and drains the jobs
  in hand (a random share of the in-progress jobs, binomial with p = 1/ready pods); it costs a
  replica until its last job ends.
* Jobs are counted, not objects: per step, the next ``n`` queued jobs start (one numpy slice)
  and their completion steps are added to a bucket array with ``bincount``.

Resolution: start times are max(arrival, t - dt), completions are rounded up to the step.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Fleet:
    def __init__(
        self,
        arrivals: FloatArray,
        run_times: FloatArray,
        *,
        concurrency: int,
        dt: float,
        n_steps: int,
        startup_seconds: float,
        initial_replicas: int,
        rng: np.random.Generator,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.arrivals = arrivals
        self.run_times = run_times
        self.concurrency = concurrency
        self.dt = dt
        self.n_steps = n_steps
        self.startup_steps = max(0, math.ceil(round(startup_seconds / dt, 9)))
        self.rng = rng
        n = len(arrivals)
        step_times = np.arange(n_steps, dtype=np.float64) * dt
        self.arrived_upto: IntArray = np.searchsorted(arrivals, step_times, side="right").astype(
            np.int64
        )
        self.start: FloatArray = np.full(n, np.nan)
        max_run = float(run_times.max()) if n else 0.0
        self.horizon = math.ceil(max_run / dt) + 2
        size = n_steps + self.horizon + 2
        self.completions_active: IntArray = np.zeros(size, dtype=np.int64)
        self.completions_drain: IntArray = np.zeros(size, dtype=np.int64)
        self.ready = initial_replicas
        self.starting: deque[int] = deque()  # ready step of each pod starting up, ascending
        self.draining: list[int] = []  # heap of release steps
        self.in_progress_active = 0
        self.in_progress_drain = 0
        self.next_start = 0
        # Per-step series (state after the step's starts).
        self.queue_ready = np.zeros(n_steps, dtype=np.int64)
        self.in_progress = np.zeros(n_steps, dtype=np.int64)
        self.pods_total = np.zeros(n_steps, dtype=np.int64)
        self.pods_ready = np.zeros(n_steps, dtype=np.int64)
        self.pods_spec = np.zeros(n_steps, dtype=np.int64)

    # ------------------------------------------------------------------ replicas
    @property
    def spec_replicas(self) -> int:
        """Non-terminating pods: what the Deployment's spec/status.replicas shows."""
        return self.ready + len(self.starting)

    def set_replicas(self, k: int, replicas: int) -> None:
        current = self.spec_replicas
        if replicas > current:
            ready_at = k + self.startup_steps
            for _ in range(replicas - current):
                if self.startup_steps == 0:
                    self.ready += 1
                else:
                    self.starting.append(ready_at)
        elif replicas < current:
            remove = current - replicas
            while remove and self.starting:
                self.starting.pop()  # newest, not ready: deleted first, nothing to drain
                remove -= 1
            while remove and self.ready:
                self._drain_one(k)
                remove -= 1

    def _drain_one(self, k: int) -> None:
        lo, hi = k + 1, k + 1 + self.horizon
        future = self.completions_active[lo:hi]
        release = k
        if self.in_progress_active > 0 and future.any():
            share = self.rng.binomial(future, 1.0 / self.ready)
            moved = int(share.sum())
            if moved:
                self.completions_active[lo:hi] -= share
                self.completions_drain[lo:hi] += share
                self.in_progress_active -= moved
                self.in_progress_drain += moved
                release = lo + int(np.flatnonzero(share)[-1])
        self.ready -= 1
        if release > k:
            heapq.heappush(self.draining, release)

    # ------------------------------------------------------------------ one step
    def advance(self, k: int) -> None:
        done = self.completions_active[k]
        if done:
            self.in_progress_active -= int(done)
        done = self.completions_drain[k]
        if done:
            self.in_progress_drain -= int(done)
        draining = self.draining
        while draining and draining[0] <= k:
            heapq.heappop(draining)
        starting = self.starting
        while starting and starting[0] <= k:
            starting.popleft()
            self.ready += 1

        arrived = int(self.arrived_upto[k])
        waiting = arrived - self.next_start
        free = self.ready * self.concurrency - self.in_progress_active
        if free > 0 and waiting > 0:
            n = min(free, waiting)
            a = self.next_start
            b = a + n
            t = k * self.dt
            st = np.maximum(self.arrivals[a:b], t - self.dt)
            self.start[a:b] = st
            steps = np.ceil((st + self.run_times[a:b]) / self.dt).astype(np.int64)
            rel = np.maximum(steps - (k + 1), 0)
            counts = np.bincount(rel)
            self.completions_active[k + 1 : k + 1 + len(counts)] += counts
            self.in_progress_active += n
            self.next_start = b
            waiting -= n
        self.queue_ready[k] = waiting
        self.in_progress[k] = self.in_progress_active + self.in_progress_drain
        self.pods_ready[k] = self.ready
        self.pods_spec[k] = self.ready + len(starting)
        self.pods_total[k] = self.pods_spec[k] + len(draining)
