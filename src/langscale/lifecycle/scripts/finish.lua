-- finish: apply the outcomes of attempts, each only if its fence token is still the run's.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6..] per outcome 6 values: id, pipeline, fence token, kind, a, b; kind is
--   'succeeded' (a: output JSON), 'failed' (a: error JSON), 'retry' (a: error JSON,
--   b: delay ms; a retriable error: due again after the delay), or 'requeue' (a: reason;
--   the worker is stopping: the run goes back to the front of its queue at once)
-- Returns per outcome: 1 applied; 0 applied already (this is a repeated call); -1 refused
-- (the attempt is stale: the run was taken over, lapsed or cancelled)
local now = now_ms()
local results = {}
local woken = {}
local released = {} -- per pipeline: the runs whose lease this call ends
for i = 6, #ARGV, 6 do
  local id, pipeline, token, kind, a, b =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local run = key(RUN, id)
  -- One read for the fence check, for ending the run (END_FIELDS from f[11]) and for the
  -- record the finished notice carries.
  local f = redis.call('HMGET', run, 'fence', 'state', 'streamed', 'created', 'pipeline',
                       'attempts', 'worker', 'tenant', 'metadata', 'started',
                       unpack(END_FIELDS))
  local fields = {pipeline = f[5], attempts = f[6], worker = f[7], tenant = f[8],
                  metadata = f[9], created = f[4], started = f[10]}
  if f[1] ~= token then
    results[#results + 1] = -1
  elseif f[2] ~= 'running' then
    results[#results + 1] = 0
  else
    released[pipeline] = released[pipeline] or {}
    table.insert(released[pipeline], id)
    if kind == 'succeeded' then
      end_run(run, id, pipeline, 'succeeded', a, 'null', now, f[3], {unpack(f, 11)})
      notice_record(id, 'succeeded', a, 'null', now, fields)
    elseif kind == 'failed' then
      end_run(run, id, pipeline, 'failed', 'null', a, now, f[3], {unpack(f, 11)})
      notice_record(id, 'failed', 'null', a, now, fields)
    else
      -- It ended its attempt without crashing: not a suspect any more.
      redis.call('HSET', run, 'state', 'queued')
      redis.call('HDEL', run, 'suspect', 'isolated', 'lost_on')
      local event
      if kind == 'retry' then
        redis.call('HSET', run, 'last_error', a)
        redis.call('ZADD', key(QUEUE, pipeline), now + tonumber(b), id)
        event = '{"state":"queued","reason":"retry","retry_in":' .. (tonumber(b) / 1000)
          .. ',"error":' .. a .. '}'
      else
        redis.call('ZADD', key(QUEUE, pipeline), f[4] or now, id)
        woken[pipeline] = true
        event = '{"state":"queued","reason":"' .. a .. '"}'
      end
      if f[3] then emit(run, id, 'state', event) end
    end
    results[#results + 1] = 1
  end
end
for p, ids in pairs(released) do call_in_chunks('ZREM', key(LEASES, p), ids, 1000) end
flush_ends(now)
for p in pairs(woken) do wake(p) end
return results
