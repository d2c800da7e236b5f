"""Run state in Redis: create-and-enqueue, start, stream, finish, cancel, read.

The run id is the arq job id. A run's hash (``keys.run_key``) is the single source of truth
for what a client sees, and its Redis Stream (``keys.stream_key``) carries its events in
order: state changes, chunks, retries and one final ``end``. Every write that changes the
state goes through a Lua script that also appends the event, so the two never disagree,
and a run reaches exactly one final state even when its work ran twice.
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
    DEFAULT_TENANT,
    FINAL_STATES,
    JOB_FUNCTION,
    ErrorInfo,
    EventType,
    JobSpec,
    RunRecord,
    RunState,
    now_ms,
)
from langscale.redis import dump_job
from langscale.settings import Settings

_FINAL = ",".join(sorted(FINAL_STATES))

# Shared Lua: is the run's state final?  Appends an event to the run's stream.
_LUA_HELPERS = f"""
local function is_final(state)
  return state and string.find('{_FINAL}', state, 1, true) ~= nil
end
local function emit(stream, maxlen, ttl, type, data)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 't', type, 'd', data)
  redis.call('EXPIRE', stream, ttl)
end
"""

# KEYS: run hash, stream. ARGV: started_at, ttl, maxlen, worker id.
# Returns {state, attempt}; attempt -1 means the run already ended and must not run again.
_START_RUN = (
    _LUA_HELPERS
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if is_final(state) then return {state, -1} end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[1], 'worker', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if attempt > 1 then
  emit(KEYS[2], ARGV[3], ARGV[2], 'retry', '{"attempt":' .. attempt .. '}')
end
emit(KEYS[2], ARGV[3], ARGV[2], 'state', '{"state":"running","attempt":' .. attempt .. '}')
return {'running', attempt}
"""
)

# KEYS: run hash, stream, leases, failed runs, queue, arq job, arq in-progress key.
# ARGV: state, output json, error json or '', finished_at, ttl, maxlen, finished channel,
# run id, completed-counter prefix.
# Ends the run and its job (what arq's finish_job does, in the same round trip).
# Returns 1 if this call ended the run, 0 if it had already ended.
_FINISH_RUN = (
    _LUA_HELPERS
    + """
local ended = is_final(redis.call('HGET', KEYS[1], 'state'))
-- a failed run keeps its job, for an operator to re-queue it (read only then)
local job = (not ended and ARGV[1] == 'failed') and redis.call('GET', KEYS[6])
redis.call('ZREM', KEYS[5], ARGV[8])
redis.call('DEL', KEYS[6], KEYS[7])
if ended then return 0 end
if job then redis.call('HSET', KEYS[1], 'job', job) end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'output', ARGV[2], 'error', ARGV[3],
           'finished_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local error = ARGV[3] ~= '' and ARGV[3] or 'null'
emit(KEYS[2], ARGV[6], ARGV[5], 'end',
     '{"state":"' .. ARGV[1] .. '","output":' .. ARGV[2] .. ',"error":' .. error .. '}')
redis.call('ZREM', KEYS[3], ARGV[8])
if ARGV[1] == 'failed' then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[4]) - tonumber(ARGV[5]))
end
local counter = ARGV[9] .. redis.call('TIME')[1]
redis.call('INCR', counter)
redis.call('EXPIRE', counter, 120)
redis.call('PUBLISH', ARGV[7], ARGV[8])
return 1
"""
)

# KEYS: run hash, stream, leases, queue, arq in-progress key. ARGV: state event json, ttl,
# maxlen, run id, error json or '', due ms. A running run goes back to the queue, due at
# `due ms` (a retry after an error, or at once when its worker stops), its lease released.
# Returns 1 if it was running.
_REQUEUE_RUN = (
    _LUA_HELPERS
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued')
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[5]) end
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], 'XX', ARGV[6], ARGV[4])
redis.call('DEL', KEYS[5])
emit(KEYS[2], ARGV[3], ARGV[2], 'state', ARGV[1])
return 1
"""
)

# KEYS: run hash, stream, queue, arq job key, failed runs. ARGV: score ms, ttl, run id,
# wake channel. An operator puts a failed run back on the queue, with the job it kept
# (RunStore.finish); its stream starts again.
# Returns 1, 0 if the run is not failed, -1 if its job is no longer kept.
_REQUEUE_FAILED = """
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then return 0 end
local job = redis.call('HGET', KEYS[1], 'job')
if not job then return -1 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'output', '', 'error', '')
redis.call('HDEL', KEYS[1], 'started_at', 'finished_at', 'job')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[2], '*', 't', 'state', 'd', '{"state":"queued","requeued":true}')
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PSETEX', KEYS[4], tonumber(ARGV[2]) * 1000, job)
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
redis.call('PUBLISH', ARGV[4], '')
return 1
"""

# KEYS: run hash, stream, queue, arq job key, leases. ARGV: error json, finished_at, ttl,
# maxlen, finished channel, cancel channel, run id.
# Returns the state before the call ('' if no such run); only queued/running are cancelled.
_CANCEL_RUN = (
    _LUA_HELPERS
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or is_final(state) then return state or '' end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'output', 'null', 'error', ARGV[1],
           'finished_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
emit(KEYS[2], ARGV[4], ARGV[3], 'end',
     '{"state":"cancelled","output":null,"error":' .. ARGV[1] .. '}')
if state == 'queued' then
  -- never starts: off the queue at once (a worker that claimed it meanwhile skips it)
  redis.call('ZREM', KEYS[3], ARGV[7])
  redis.call('DEL', KEYS[4])
else
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
redis.call('ZREM', KEYS[5], ARGV[7])
redis.call('PUBLISH', ARGV[5], ARGV[7])
return state
"""
)


def _state_event(state: RunState) -> str:
    return json.dumps({"state": state.value})


class RunStore:
    """Every read and write of run state, for both services."""

    def __init__(
        self, redis: Redis, *, queue_name: str, result_ttl: int, stream_max_len: int = 10_000
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.result_ttl = result_ttl
        self.stream_max_len = stream_max_len
        self._start = redis.register_script(_START_RUN)
        self._finish = redis.register_script(_FINISH_RUN)
        self._cancel = redis.register_script(_CANCEL_RUN)
        self._requeue = redis.register_script(_REQUEUE_RUN)
        self._requeue_failed = redis.register_script(_REQUEUE_FAILED)
        self.leases = keys.leases_key(queue_name)

    @classmethod
    def from_settings(cls, redis: Redis, settings: Settings) -> RunStore:
        return cls(
            redis,
            queue_name=settings.queue_name,
            result_ttl=settings.result_ttl,
            stream_max_len=settings.stream_max_len,
        )

    async def enqueue(
        self,
        specs: Sequence[JobSpec],
        metadata: dict[str, Any] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """Record the runs as queued and put their jobs on the queue, in one transaction,
        then wake idle workers."""
        created = time.time()
        meta = json.dumps(metadata or {})
        queued = _state_event(RunState.QUEUED)
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
                        "tenant": tenant,
                    },
                )
                pipe.expire(key, self.result_ttl)
                stream = keys.stream_key(spec.run_id)
                pipe.xadd(stream, {"t": EventType.STATE.value, "d": queued})
                pipe.expire(stream, self.result_ttl)
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

    async def start(self, run_id: str, worker_id: str = "") -> tuple[RunState, int]:
        """Mark a run running on a worker. Returns its state and attempt number (-1: it
        already ended and must not run again)."""
        state, attempt = await self._start(
            keys=[keys.run_key(run_id), keys.stream_key(run_id)],
            args=[time.time(), self.result_ttl, self.stream_max_len, worker_id],
        )
        return RunState(state.decode() if isinstance(state, bytes) else state), int(attempt)

    async def append(self, run_id: str, events: Sequence[tuple[EventType, str]]) -> None:
        """Append events (type, JSON data) to a run's stream in one round trip."""
        stream = keys.stream_key(run_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_type, data in events:
                pipe.xadd(
                    stream,
                    {"t": event_type.value, "d": data},
                    maxlen=self.stream_max_len,
                    approximate=True,
                )
            await pipe.execute()

    async def finish(
        self,
        run_id: str,
        state: RunState,
        *,
        output_json: str = "null",
        error: ErrorInfo | None = None,
    ) -> bool:
        """End a run once. False if another attempt (or a cancel) had already ended it."""
        ended = await self._finish(
            keys=[
                keys.run_key(run_id),
                keys.stream_key(run_id),
                self.leases,
                keys.FAILED_RUNS,
                self.queue_name,
                keys.job_key(run_id),
                keys.in_progress_key_prefix + run_id,
            ],
            args=[
                state.value,
                output_json,
                error.model_dump_json() if error else "",
                time.time(),
                self.result_ttl,
                self.stream_max_len,
                keys.RUN_FINISHED_CHANNEL,
                run_id,
                keys.completed_key_prefix(self.queue_name),
            ],
        )
        return bool(ended)

    async def requeue(
        self,
        run_id: str,
        reason: str,
        *,
        error: ErrorInfo | None = None,
        retry_in: float | None = None,
    ) -> bool:
        """A running run goes back to the queue: a retry after ``error`` (in ``retry_in``
        seconds), or its worker is stopping. Its stream says so."""
        event: dict[str, Any] = {"state": RunState.QUEUED.value, "reason": reason}
        if retry_in is not None:
            event["retry_in"] = round(retry_in, 3)
        if error is not None:
            event["error"] = error.model_dump()
        done = await self._requeue(
            keys=[
                keys.run_key(run_id),
                keys.stream_key(run_id),
                self.leases,
                self.queue_name,
                keys.in_progress_key_prefix + run_id,
            ],
            args=[
                json.dumps(event),
                self.result_ttl,
                self.stream_max_len,
                run_id,
                error.model_dump_json() if error else "",
                now_ms() + int(1000 * (retry_in or 0)),
            ],
        )
        return bool(done)

    async def requeue_failed(self, run_id: str) -> int:
        """Put a failed run back on the queue (operators): 1 done, 0 the run is not
        failed, -1 its job is no longer kept."""
        done = await self._requeue_failed(
            keys=[
                keys.run_key(run_id),
                keys.stream_key(run_id),
                self.queue_name,
                keys.job_key(run_id),
                keys.FAILED_RUNS,
            ],
            args=[now_ms(), self.result_ttl, run_id, keys.wake_channel(self.queue_name)],
        )
        return int(done)

    async def failed_run_ids(self, limit: int, before: float | None = None) -> list[str]:
        """Failed runs, newest first (kept for the result TTL)."""
        ids = await self.redis.zrevrangebyscore(
            keys.FAILED_RUNS, before if before is not None else "+inf", "-inf", start=0, num=limit
        )
        return [i.decode() for i in ids]

    async def cancel(self, run_id: str, reason: str) -> RunState | None:
        """Cancel a queued or running run. Returns the state it had (None: no such run);
        a final state means nothing changed."""
        error = ErrorInfo(type="cancelled", message=reason)
        before = await self._cancel(
            keys=[
                keys.run_key(run_id),
                keys.stream_key(run_id),
                self.queue_name,
                keys.job_key(run_id),
                self.leases,
            ],
            args=[
                error.model_dump_json(),
                time.time(),
                self.result_ttl,
                self.stream_max_len,
                keys.RUN_FINISHED_CHANNEL,
                keys.CANCEL_CHANNEL,
                run_id,
            ],
        )
        before = before.decode() if isinstance(before, bytes) else before
        return RunState(before) if before else None

    async def read_events(
        self, run_id: str, after: str, *, block_ms: int, count: int = 100
    ) -> list[tuple[str, EventType, str]]:
        """Events after the stream id ``after`` ("0" for all): (id, type, JSON data).
        Blocks up to ``block_ms`` when there are none yet."""
        reply = await self.redis.xread(
            {keys.stream_key(run_id): after}, count=count, block=block_ms
        )
        if not reply:
            return []
        ((_, entries),) = reply
        return [
            (entry_id.decode(), EventType(fields[b"t"].decode()), fields[b"d"].decode())
            for entry_id, fields in entries
        ]

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
        tenant=fields.get("tenant", DEFAULT_TENANT),
        worker=fields.get("worker") or None,
        last_error=ErrorInfo.model_validate_json(fields["last_error"])
        if fields.get("last_error")
        else None,
        created_at=_float(fields.get("created_at")),
        started_at=_float(fields.get("started_at")),
        finished_at=_float(fields.get("finished_at")),
    )


def _float(value: str | None) -> float | None:
    return float(value) if value else None


__all__ = ["RunStore", "now_ms"]
