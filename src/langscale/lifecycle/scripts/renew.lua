-- renew: extend the leases a worker holds, tell it which runs it no longer holds, and
-- sweep the partition's lapsed leases (their workers died or froze).
-- KEYS[1] the partition's clock hash {tick, resumed}; KEYS[2] its isolator key
-- ARGV[6] worker id; ARGV[7] lease, ms; ARGV[8] 1: crash isolation (suspects) is on
-- ARGV[9] crashes that fail a run; ARGV[10] attempts that fail a run (isolation off)
-- ARGV[11] n; ARGV[12..11+n] the pipelines the worker serves
-- ARGV[12+n..] per run it holds: pipeline, id, fence token
-- Returns {runs swept, then the ids of the runs this worker no longer holds (another
-- attempt or a cancel took them)}
local now = now_ms()
local worker, lease_ms = ARGV[6], tonumber(ARGV[7])
local n = tonumber(ARGV[11])

-- One clock, safely: Redis time runs on while Redis is down, restarting or failing over,
-- and while every worker is frozen. After such a silence (no renewal for a lease) every
-- holder gets one more lease to renew before anything counts as lapsed.
local clock = redis.call('HMGET', KEYS[1], 'tick', 'resumed')
local tick, resumed = tonumber(clock[1]), tonumber(clock[2]) or now
if not tick or now - tick > lease_ms then
  resumed = now
  redis.call('HSET', KEYS[1], 'resumed', now)
end
redis.call('HSET', KEYS[1], 'tick', now)

local lost = {}
for i = 12 + n, #ARGV, 3 do
  local pipeline, id, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local f = redis.call('HMGET', key(RUN, id), 'fence', 'state')
  if f[1] ~= token then
    lost[#lost + 1] = id  -- taken over (its lease lapsed) or cancelled
  elseif f[2] == 'running' then
    redis.call('ZADD', key(LEASES, pipeline), 'XX', now + lease_ms, id)
  end  -- else this attempt has just ended it: nothing to renew
end
if redis.call('GET', KEYS[2]) == worker then redis.call('PEXPIRE', KEYS[2], lease_ms) end

local swept = 0
if now - resumed < lease_ms then return {swept, unpack(lost)} end

local woken = {}
local function requeue(run, id, pipeline, score, reason, suspect)
  redis.call('HSET', run, 'state', 'queued')
  if suspect then
    redis.call('ZADD', key(SUSPECTS, pipeline), score, id)
  else
    redis.call('ZADD', key(QUEUE, pipeline), score, id)
  end
  woken[pipeline] = true
  if redis.call('HGET', run, 'streamed') then
    emit(run, id, 'state', '{"state":"queued","reason":"' .. reason .. '"}')
  end
end

-- The runs that died with a run proven guilty were innocent: back to the normal queue.
local function exonerate(lost_on)
  for k = 12, 11 + n do
    local p = ARGV[k]
    for _, id in ipairs(redis.call('ZRANGE', key(SUSPECTS, p), 0, -1)) do
      local run = key(RUN, id)
      if redis.call('HGET', run, 'lost_on') == lost_on then
        redis.call('ZREM', key(SUSPECTS, p), id)
        redis.call('HDEL', run, 'suspect', 'lost_on')
        redis.call('ZADD', key(QUEUE, p), redis.call('HGET', run, 'created') or now, id)
        woken[p] = true
      end
    end
  end
end

local function lapse(id, pipeline)
  local run = key(RUN, id)
  local f = redis.call('HMGET', run, 'state', 'isolated', 'attempts', 'created', 'worker',
                       'lost_on', 'streamed')
  if f[1] ~= 'running' then return end
  redis.call('HINCRBY', run, 'fence', 1) -- whatever the dead attempt still writes is refused
  swept = swept + 1
  local created = tonumber(f[4]) or now
  if f[2] then
    -- It ran alone, so its worker's death is its own doing.
    redis.call('HDEL', run, 'isolated')
    local crashes = redis.call('HINCRBY', run, 'crashes', 1)
    if f[6] then exonerate(f[6]) end
    if crashes >= tonumber(ARGV[9]) then
      local error = '{"type":"worker_crashed","message":"the run\'s worker died while '
        .. 'running it alone, ' .. crashes .. ' times"}'
      end_run(run, id, pipeline, 'failed', 'null', error, now, f[7])
    else
      requeue(run, id, pipeline, now, 'worker_crashed', true)
    end
  elseif ARGV[8] == '1' then
    redis.call('HSET', run, 'suspect', 1, 'lost_on', f[5] or '')
    requeue(run, id, pipeline, created, 'worker_lost', true)
  elseif tonumber(f[3] or 0) >= tonumber(ARGV[10]) then
    local error = '{"type":"run_lost","message":"the run\'s worker died or stopped on '
      .. 'each of its ' .. f[3] .. ' attempts"}'
    end_run(run, id, pipeline, 'failed', 'null', error, now, f[7])
  else
    requeue(run, id, pipeline, created, 'worker_lost', false)
  end
end

for k = 12, 11 + n do
  local p = ARGV[k]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key(LEASES, p), '-inf', '(' .. now,
                                 'LIMIT', 0, 100)) do
    redis.call('ZREM', key(LEASES, p), id)
    lapse(id, p)
  end
end
-- The failed-run index keeps what the run hashes keep, no older.
redis.call('ZREMRANGEBYSCORE', P .. FAILED, '-inf', now - RESULT_TTL * 1000)
flush_ends(now)
for p in pairs(woken) do wake(p) end
return {swept, unpack(lost)}
