-- enqueue: record new runs as queued and put them on their pipeline's queue, all or none,
-- in one step with admission control and the Idempotency-Key check.
-- KEYS[1] the pipeline's queue in this partition
-- KEYS[2] the request's idempotency key (KEYS[1] again when it has none)
-- KEYS[3..] the new runs' hashes, in the order of their ids below
-- ARGV[6] admission limit: refuse if the queue would hold more due runs (0: no limit)
-- ARGV[7] idempotency window, seconds; ARGV[8] request hash ('' when no key)
-- ARGV[9] pipeline; ARGV[10] tenant; ARGV[11] metadata JSON ('' when none)
-- ARGV[12] 1 when the runs are streamed (their streams start now)
-- ARGV[13..] per run: its id, its job JSON
-- Returns {'queued', created ms} | {'replay', run id, state} | {'conflict', run id}
--       | {'full', due runs in the queue}
local now = now_ms()
local queue, idem, pipeline = KEYS[1], KEYS[2], ARGV[9]
if ARGV[8] ~= '' then
  local held = redis.call('GET', idem)
  if held then
    local run_id, hash = string.match(held, '^(%S+) (%S+)$')
    if hash ~= ARGV[8] then return {'conflict', run_id} end
    local state = redis.call('HGET', key(RUN, run_id), 'state')
    if state then return {'replay', run_id, state} end
    -- the run it named has expired: the key is free again
  end
end
local count = (#ARGV - 12) / 2
local limit = tonumber(ARGV[6])
if limit > 0 then
  local due = redis.call('ZCOUNT', queue, '-inf', now)
  if due + count > limit then return {'full', due} end
end
for i = 0, count - 1 do
  local id, run = ARGV[13 + 2 * i], KEYS[3 + i]
  -- HSETNX: the same runs enqueued again (a retried call) change nothing
  if redis.call('HSETNX', run, 'state', 'queued') == 1 then
    redis.call('HSET', run, 'pipeline', pipeline, 'tenant', ARGV[10], 'created', now,
               'job', ARGV[14 + 2 * i])
    if ARGV[11] ~= '' then redis.call('HSET', run, 'metadata', ARGV[11]) end
    if ARGV[12] == '1' then
      redis.call('HSET', run, 'streamed', 1)
      emit(run, id, 'state', '{"state":"queued"}')
    end
    redis.call('EXPIRE', run, RESULT_TTL)
    redis.call('ZADD', queue, now, id)
  end
end
if ARGV[8] ~= '' then redis.call('SET', idem, ARGV[13] .. ' ' .. ARGV[8], 'EX', ARGV[7]) end
wake(pipeline)
return {'queued', now}
