-- claim: start up to N due runs of the pipelines a worker serves (oldest first across
-- them), or one suspect to run alone. Each started run gets a new fence token: every later
-- write of this attempt must present it.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- KEYS[2] the partition's isolator key
-- ARGV[6] worker id; ARGV[7] free slots; ARGV[8] lease, ms
-- ARGV[9] 1 when the worker runs nothing now (it may take a suspect, alone)
-- ARGV[10..] the pipelines it serves
-- Returns {mode, then 6 values per started run: id, fence token, attempt, job JSON, ms
--   since it was enqueued, pipeline}. mode: 'runs'; 'isolated' (one suspect: run it and
--   nothing else); 'isolating' (suspects wait and this worker takes them: start nothing
--   more until it is idle).
local now = now_ms()
local worker, slots, lease_ms = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local pipelines = {}
for i = 10, #ARGV do pipelines[#pipelines + 1] = ARGV[i] end

local function start(id, pipeline, isolated)
  local run = key(RUN, id)
  local f = redis.call('HMGET', run, 'state', 'attempts', 'created', 'job', 'streamed')
  if f[1] ~= 'queued' then return nil end -- expired while queued
  local token = redis.call('HINCRBY', run, 'fence', 1)
  local attempt = (tonumber(f[2]) or 0) + 1
  redis.call('HSET', run, 'state', 'running', 'attempts', attempt, 'started', now,
             'worker', worker)
  if isolated then redis.call('HSET', run, 'isolated', 1) end
  redis.call('ZADD', key(LEASES, pipeline), now + lease_ms, id)
  if f[5] then
    if attempt > 1 then emit(run, id, 'retry', '{"attempt":' .. attempt .. '}') end
    emit(run, id, 'state', '{"state":"running","attempt":' .. attempt .. '}')
  end
  return {id, token, attempt, f[4] or '', now - tonumber(f[3] or now), pipeline}
end

-- Crash isolation: runs whose worker died wait as suspects until a worker runs each alone.
local waiting = 0
for _, p in ipairs(pipelines) do waiting = waiting + redis.call('ZCARD', key(SUSPECTS, p)) end
if waiting > 0 then
  if ARGV[9] == '1' then
    for _, p in ipairs(pipelines) do
      local head = redis.call('ZRANGE', key(SUSPECTS, p), 0, 0)
      if head[1] then
        redis.call('ZREM', key(SUSPECTS, p), head[1])
        local started = start(head[1], p, true)
        if started then
          redis.call('SET', KEYS[2], worker, 'PX', lease_ms)
          return {'isolated', unpack(started)}
        end
      end
    end
  end
  -- Under load no worker is ever idle: one worker per partition stops taking runs until
  -- it is, so suspects cannot starve.
  local holder = redis.call('GET', KEYS[2])
  if not holder then
    redis.call('SET', KEYS[2], worker, 'PX', lease_ms)
    holder = worker
  end
  if holder == worker then
    redis.call('PEXPIRE', KEYS[2], lease_ms)
    return {'isolating'}
  end
elseif redis.call('GET', KEYS[2]) == worker then
  redis.call('DEL', KEYS[2])
end

local result = {'runs'}
if slots <= 0 then return result end
local due = {}
for _, p in ipairs(pipelines) do
  local head = redis.call('ZRANGEBYSCORE', key(QUEUE, p), '-inf', now, 'WITHSCORES',
                          'LIMIT', 0, slots)
  for i = 1, #head, 2 do due[#due + 1] = {tonumber(head[i + 1]), head[i], p} end
end
if #pipelines > 1 then table.sort(due, function(a, b) return a[1] < b[1] end) end
for i = 1, math.min(slots, #due) do
  local score, id, p = due[i][1], due[i][2], due[i][3]
  redis.call('ZREM', key(QUEUE, p), id)
  local started = start(id, p, false)
  if started then
    for _, value in ipairs(started) do result[#result + 1] = value end
  end
end
return result
