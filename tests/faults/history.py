"""The history checker of the fault tests: what every accepted run must look like at the end.

Runs of the ``recorded`` test pipeline make output that names the attempt that made each
chunk (``<id>:<attempt>:<n> ``), and record each execution in ``test:executions``. From
Redis alone, after the faults, the checker finds:

- **lost**: an accepted run that has not ended (or vanished);
- **wrong output**: a succeeded run whose output is not exactly its final attempt's chunks
  (a stale attempt's write got through, or two attempts' outputs were mixed);
- **duplicated ends**: a streamed run with more than one ``end`` event;
- **stream violations**: a streamed run whose stream, after its last ``retry`` event,
  holds chunks of another attempt or misses some of the final attempt's;
- **executions**: how many times each run's pipeline started (faults legitimately cause
  re-executions; tests without such faults assert there are none).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from langscale.keys import Keyspace

from support import sync_client

FINAL = {"succeeded", "failed", "cancelled"}


def expected_output(work: dict[str, Any], attempt: int) -> str:
    padding = "." * work.get("pad", 0)
    chunks = max(1, work.get("chunks", 4))
    return "".join(f"{work['id']}:{attempt}:{i}{padding} " for i in range(chunks))


@dataclass
class Verdict:
    runs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    wrong_output: list[str] = field(default_factory=list)
    duplicated_ends: list[str] = field(default_factory=list)
    stream_violations: list[str] = field(default_factory=list)
    executions: Counter[str] = field(default_factory=Counter)

    @property
    def executed_twice(self) -> list[str]:
        return sorted(run_id for run_id, n in self.executions.items() if n > 1)

    @property
    def clean(self) -> bool:
        return not (
            self.lost or self.wrong_output or self.duplicated_ends or self.stream_violations
        )

    def summary(self) -> str:
        return (
            f"runs {self.runs}, states {dict(self.states)}, lost {len(self.lost)}, "
            f"wrong output {len(self.wrong_output)}, duplicated ends "
            f"{len(self.duplicated_ends)}, stream violations {len(self.stream_violations)}, "
            f"executed more than once {len(self.executed_twice)}"
        )


def check(
    db: Redis,
    accepted: dict[str, dict[str, Any]],
    streamed: set[str] = frozenset(),  # type: ignore[assignment]
    runs_url: str | None = None,
) -> Verdict:
    """``db``: where executions were recorded; ``runs_url``: the stack's Redis, if not the
    same. ``accepted``: run id -> its input (a ``recorded`` Work); ``streamed``: the runs
    submitted with a stream."""
    keyspace = Keyspace()
    verdict = Verdict(runs=len(accepted))
    for raw in db.lrange("test:executions", 0, -1):
        entry = json.loads(raw)
        if entry["event"] == "start" and entry["run_id"] in accepted:
            verdict.executions[entry["run_id"]] += 1
    runs = sync_client(runs_url) if runs_url else db
    for run_id, work in accepted.items():
        run = {k.decode(): v.decode() for k, v in runs.hgetall(keyspace.run(run_id)).items()}
        state = run.get("state", "missing")
        verdict.states[state] += 1
        if state not in FINAL:
            verdict.lost.append(run_id)
            continue
        attempt = int(run.get("attempts", 0))
        if state == "succeeded" and json.loads(run.get("output", "null")) != expected_output(
            work, attempt
        ):
            verdict.wrong_output.append(run_id)
        if run_id in streamed:
            _check_stream(runs, keyspace, run_id, work, attempt, state, verdict)
    return verdict


def _check_stream(
    db: Redis,
    keyspace: Keyspace,
    run_id: str,
    work: dict[str, Any],
    attempt: int,
    state: str,
    verdict: Verdict,
) -> None:
    events = [
        (f[b"t"].decode(), json.loads(f[b"d"])) for _, f in db.xrange(keyspace.events(run_id))
    ]
    kinds = [kind for kind, _ in events]
    if kinds.count("end") != 1:
        verdict.duplicated_ends.append(run_id)
        return
    last_retry = max((i for i, kind in enumerate(kinds) if kind == "retry"), default=-1)
    chunks = [data for kind, data in events[last_retry + 1 :] if kind == "data" and data]
    if state == "succeeded" and "".join(chunks) != expected_output(work, attempt):
        verdict.stream_violations.append(run_id)
