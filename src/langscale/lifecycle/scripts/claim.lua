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
local worker, slots, lease_ms = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local pipelines = {}
for i = 10, #ARGV do pipelines[#pipelines + 1] = ARGV[i] end

-- A partition with none of these keys has nothing to do (empty sorted sets do not exist):
-- one EXISTS answers that, where the steps below take 3 + one per pipeline. Workers ask
-- every partition in turn, and on a cluster most are empty at any moment.
local watched = {KEYS[2]}
for _, p in ipairs(pipelines) do
  watched[#watched + 1] = key(QUEUE, p)
  watched[#watched + 1] = key(SUSPECTS, p)
end
if redis.call('EXISTS', unpack(watched)) == 0 then return {'runs'} end

local now = now_ms()

-- Starts a run taken off its queue (the caller adds it to its pipeline's leases).
local function start(id, pipeline, isolated)
  local run = key(RUN, id)
  local f = redis.call('HMGET', run, 'state', 'attempts', 'created', 'job', 'streamed', 'fence')
  if f[1] ~= 'queued' then return nil end -- expired while queued
  -- The step carries the claim's time: a claim a failover lost (replication is
  -- asynchronous) and made again gets another token, so its first attempt writes nothing.
  local token = (tonumber(f[6]) or 0) + 1 + now % 1000000
  local attempt = (tonumber(f[2]) or 0) + 1
  local fields = {'state', 'running', 'attempts', attempt, 'started', now, 'worker', worker,
                  'fence', token}
  if isolated then fields[#fields + 1] = 'isolated'; fields[#fields + 1] = 1 end
  redis.call('HSET', run, unpack(fields))
  if f[5] then
    if attempt > 1 then emit(run, id, 'retry', '{"attempt":' .. attempt .. '}') end
    emit(run, id, 'state', '{"state":"running","attempt":' .. attempt .. '}')
  end
  return {id, token, attempt, f[4] or '', now - tonumber(f[3] or now), pipeline}
end

-- Crash isolation: runs whose worker died wait as suspects until a worker runs each alone.
local suspects = {}
for i, p in ipairs(pipelines) do suspects[i] = key(SUSPECTS, p) end
if redis.call('EXISTS', unpack(suspects)) > 0 then
  if ARGV[9] == '1' then
    for _, p in ipairs(pipelines) do
      local head = redis.call('ZRANGE', key(SUSPECTS, p), 0, 0)
      if head[1] then
        redis.call('ZREM', key(SUSPECTS, p), head[1])
        local started = start(head[1], p, true)
        if started then
          redis.call('ZADD', key(LEASES, p), now + lease_ms, head[1])
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
-- Taken off their queues, then onto their leases, in one call per pipeline each.
local taken, leased = {}, {}
for i = 1, math.min(slots, #due) do
  local p = due[i][3]
  taken[p] = taken[p] or {}
  table.insert(taken[p], due[i][2])
end
for p, ids in pairs(taken) do call_in_chunks('ZREM', key(QUEUE, p), ids, 1000) end
for i = 1, math.min(slots, #due) do
  local id, p = due[i][2], due[i][3]
  local started = start(id, p, false)
  if started then
    for _, value in ipairs(started) do result[#result + 1] = value end
    leased[p] = leased[p] or {}
    table.insert(leased[p], now + lease_ms)
    table.insert(leased[p], id)
  end
end
for p, entries in pairs(leased) do call_in_chunks('ZADD', key(LEASES, p), entries, 1000) end
return result
