"""Run state in Redis: create-and-enqueue, start, finish, read.

The run id is the arq job id. A run's hash (``keys.run_key``) is the single source of
truth for what a client sees; writes that end a run go through one Lua script so a run
reaches exactly one final state even when its work ran twice (at-least-once execution).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from arq.jobs import serialize_job
from redis.asyncio import Redis

from langscale import keys
from langscale.contract import (
    FINAL_STATES,
    JOB_FUNCTION,
    ErrorInfo,
    JobSpec,
    RunRecord,
    RunState,
    now_ms,
)
from langscale.redis import dump_job

_FINAL = ",".join(sorted(FINAL_STATES))

# KEYS[1] run hash. ARGV: started_at, ttl. Returns {state, attempts}; attempts -1 means
# the run is already final (a duplicate delivery) and must not run again.
_START_RUN = f"""
local state = redis.call('HGET', KEYS[1], 'state')
if state and string.find('{_FINAL}', state, 1, true) then return {{state, -1}} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {{'running', attempts}}
"""

# KEYS[1] run hash. ARGV: state, output json, error json, finished_at, ttl, channel, run id.
# Returns 1 if this call ended the run, 0 if it had already ended.
_FINISH_RUN = f"""
local state = redis.call('HGET', KEYS[1], 'state')
if state and string.find('{_FINAL}', state, 1, true) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'output', ARGV[2], 'error', ARGV[3],
           'finished_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""


class RunStore:
    """Every read and write of run state, for both services."""

    def __init__(self, redis: Redis, *, queue_name: str, result_ttl: int) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.result_ttl = result_ttl
        self._start = redis.register_script(_START_RUN)
        self._finish = redis.register_script(_FINISH_RUN)

    async def enqueue(
        self, specs: Sequence[JobSpec], metadata: dict[str, Any] | None = None
    ) -> None:
        """Record the runs as queued and put their jobs on the queue, in one transaction,
        then wake idle workers."""
        created = time.time()
        meta = json.dumps(metadata or {})
        async with self.redis.pipeline(transaction=True) as pipe:
            for spec in specs:
                key = keys.run_key(spec.run_id)
                pipe.hset(
                    key,
                    mapping={
                        "pipeline": spec.pipeline,
                        "state": RunState.QUEUED.value,
                        "attempts": 0,
                        "created_at": created,
                        "metadata": meta,
                    },
                )
                pipe.expire(key, self.result_ttl)
                payload = serialize_job(
                    JOB_FUNCTION,
                    (spec.model_dump(mode="json"),),
                    {},
                    None,
                    spec.enqueued_at_ms,
                    serializer=dump_job,
                )
                pipe.psetex(keys.job_key(spec.run_id), self.result_ttl * 1000, payload)
                pipe.zadd(self.queue_name, {spec.run_id: spec.enqueued_at_ms})
            pipe.publish(keys.wake_channel(self.queue_name), b"")
            await pipe.execute()

    async def start(self, run_id: str) -> tuple[RunState, int]:
        """Mark a run running. Returns its state and attempt number (-1: already final)."""
        state, attempts = await self._start(
            keys=[keys.run_key(run_id)], args=[time.time(), self.result_ttl]
        )
        return RunState(state.decode() if isinstance(state, bytes) else state), int(attempts)

    async def finish(
        self,
        run_id: str,
        state: RunState,
        *,
        output_json: str = "null",
        error: ErrorInfo | None = None,
    ) -> bool:
        """End a run once. False if another attempt had already ended it."""
        ended = await self._finish(
            keys=[keys.run_key(run_id)],
            args=[
                state.value,
                output_json,
                error.model_dump_json() if error else "",
                time.time(),
                self.result_ttl,
                keys.RUN_FINISHED_CHANNEL,
                run_id,
            ],
        )
        return bool(ended)

    async def get(self, run_id: str) -> RunRecord | None:
        return (await self.get_many([run_id]))[0]

    async def get_many(self, run_ids: Sequence[str]) -> list[RunRecord | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(keys.run_key(run_id))
            rows = await pipe.execute()
        return [_record(run_id, row) for run_id, row in zip(run_ids, rows, strict=True)]


def _record(run_id: str, row: dict[bytes, bytes]) -> RunRecord | None:
    if not row:
        return None
    fields = {k.decode(): v.decode() for k, v in row.items()}
    error = fields.get("error")
    return RunRecord(
        run_id=run_id,
        pipeline=fields["pipeline"],
        state=RunState(fields["state"]),
        attempts=int(fields.get("attempts", 0)),
        output=json.loads(fields["output"]) if fields.get("output") else None,
        error=ErrorInfo.model_validate_json(error) if error else None,
        metadata=json.loads(fields.get("metadata") or "{}"),
        created_at=_float(fields.get("created_at")),
        started_at=_float(fields.get("started_at")),
        finished_at=_float(fields.get("finished_at")),
    )


def _float(value: str | None) -> float | None:
    return float(value) if value else None


__all__ = ["RunStore", "now_ms"]
