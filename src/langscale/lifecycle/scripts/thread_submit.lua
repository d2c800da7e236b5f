-- thread_submit: queue new runs of one thread (a conversation) in order, deciding what
-- becomes of the thread's runs that have not ended (the multitask strategy), in one step
-- with admission control and the Idempotency-Key check. A thread's runs never run at the
-- same time: they wait in the thread's list, and only its head is on its pipeline's queue
-- (a run that ends lets the next one start: end_run).
-- KEYS[1] the pipeline's queue in this partition
-- KEYS[2] the request's idempotency key (KEYS[1] again when it has none)
-- KEYS[3] the thread's hash; KEYS[4] its queue (list); KEYS[5] its log; KEYS[6] its history
-- KEYS[7..] the new runs' hashes, in the order of their ids below
-- ARGV[6] admission limit (0: none); ARGV[7] idempotency window, s; ARGV[8] request hash
-- ('' when no key); ARGV[9] pipeline; ARGV[10] tenant; ARGV[11] metadata JSON ('' none)
-- ARGV[12] 1 when the runs are streamed; ARGV[13] the thread ("<tenant>:<thread id>")
-- ARGV[14] strategy: 'enqueue' (wait in order), 'reject' (refuse if busy), 'interrupt'
-- (cancel the thread's runs, keep what they wrote to its history; the running one may
-- still add its partial answer: history_partial.lua), 'rollback' (cancel them
-- and drop what they wrote); ARGV[15] most runs a thread may hold that have not ended
-- ARGV[16] the thread's TTL, s; ARGV[17] run ids its log keeps
-- ARGV[18] the listing indexes each run joins, ARGV[19] more fields of each run hash: as
--   a group's listing indexes and fields in enqueue_many.lua
-- ARGV[20..] per run: id, job
-- Returns {'queued', created ms, then the ids of the runs cancelled} | {'replay', run id,
--   state} | {'conflict', run id} | {'full', due runs} | {'busy', head run id, its state}
--   | {'thread_full', runs not ended}
local now = now_ms()
local queue, idem, pipeline = KEYS[1], KEYS[2], ARGV[9]
local thread_hash, thread_queue, thread_log, history = KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local thread, strategy = ARGV[13], ARGV[14]
local replied = idempotent_reply(idem, ARGV[8])
if replied then return replied end
local count = (#ARGV - 19) / 2
admit_head(thread, now) -- drops runs that expired while waiting
local pending = redis.call('LLEN', thread_queue)
if pending > 0 and strategy == 'reject' then
  local head = redis.call('LINDEX', thread_queue, 0)
  return {'busy', head, redis.call('HGET', key(RUN, head), 'state')}
end
if strategy == 'enqueue' and pending + count > tonumber(ARGV[15]) then
  return {'thread_full', pending}
end
local limit = tonumber(ARGV[6])
if limit > 0 then
  local due = redis.call('ZCOUNT', queue, '-inf', now)
  if due + count > limit then return {'full', due} end
end

local result = {'queued', now}
if pending > 0 and (strategy == 'interrupt' or strategy == 'rollback') then
  local victims = redis.call('LRANGE', thread_queue, 0, -1)
  redis.call('DEL', thread_queue)
  local error = '{"type":"' .. (strategy == 'rollback' and 'rolled_back' or 'interrupted')
    .. '","message":"' .. strategy .. ' by run ' .. ARGV[20] .. ' of its thread"}'
  local dropped = {}
  for _, id in ipairs(victims) do
    local run = key(RUN, id)
    local f = redis.call('HMGET', run, 'state', 'pipeline', 'streamed')
    if f[1] == 'queued' or f[1] == 'running' then
      if f[1] == 'queued' then
        redis.call('ZREM', key(QUEUE, f[2]), id)
        redis.call('ZREM', key(SUSPECTS, f[2]), id)
      else -- its worker stops it; the fence makes sure it writes nothing more
        if strategy == 'interrupt' then
          -- ...but its partial answer, once (history_partial.lua); the next run waits
          -- for it at most until the attempt's lease would have lapsed.
          local lease = redis.call('ZSCORE', key(LEASES, f[2]), id)
          redis.call('HSET', run, 'partial_fence', redis.call('HGET', run, 'fence'))
          redis.call('HSET', thread_hash, 'partial_run', id, 'partial_until', lease or now)
        end
        redis.call('ZREM', key(LEASES, f[2]), id)
        redis.call('PUBLISH', G .. CANCEL, id)
      end
      redis.call('HINCRBY', run, 'fence', 1)
      end_run(run, id, f[2], 'cancelled', 'null', error, now, f[3])
      dropped[id] = true
      result[#result + 1] = id
    end
  end
  if strategy == 'rollback' and #result > 2 then drop_turns(thread, dropped) end
end

create_runs(pipeline, ARGV[10], ARGV[11], ARGV[12], ARGV[18], ARGV[19], 7, 20, count, now,
            {'thread', thread}, function(id)
              redis.call('RPUSH', thread_queue, id)
              redis.call('RPUSH', thread_log, id)
              redis.call('HINCRBY', thread_hash, 'runs', 1)
            end)
redis.call('LTRIM', thread_log, -tonumber(ARGV[17]), -1)
if redis.call('HSETNX', thread_hash, 'created', now) == 1 then -- a new thread: listed
  redis.call('ZADD', key(THREADS, ARGV[10]), now, string.sub(thread, #ARGV[10] + 2))
end
redis.call('HSET', thread_hash, 'updated', now)
local ttl = tonumber(ARGV[16])
redis.call('EXPIRE', thread_hash, ttl)
redis.call('EXPIRE', thread_log, ttl)
redis.call('EXPIRE', key(THREADS, ARGV[10]), ttl) -- outlives every thread listed in it
redis.call('EXPIRE', thread_queue, math.max(ttl, RESULT_TTL))
if redis.call('EXISTS', history) == 1 then redis.call('EXPIRE', history, ttl) end
admit_head(thread, now)
if ARGV[8] ~= '' then redis.call('SET', idem, ARGV[20] .. ' ' .. ARGV[8], 'EX', ARGV[7]) end
flush_ends(now)
return result
