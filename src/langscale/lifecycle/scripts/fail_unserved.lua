-- fail_unserved: end the runs of a pipeline the registry forgot (no live worker served it
-- for LANGSCALE_PIPELINE_RETENTION): queued ones and suspects, and running ones whose lease
-- lapsed (their worker died and nobody serving the pipeline was left to sweep them) fail
-- with error type pipeline_unavailable. A bounded number per call: call until it returns
-- fewer than asked.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6] pipeline; ARGV[7] most runs to end; ARGV[8] error JSON
-- Returns the number of runs ended
local now = now_ms()
local pipeline, n, error = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local ended = 0
local function fail(set, id)
  redis.call('ZREM', set, id)
  local run = key(RUN, id)
  local f = redis.call('HMGET', run, 'state', 'streamed')
  if f[1] and not FINAL[f[1]] then
    redis.call('HINCRBY', run, 'fence', 1)
    end_run(run, id, pipeline, 'failed', 'null', error, now, f[2])
    ended = ended + 1
  end
end
for _, kind in ipairs({QUEUE, SUSPECTS}) do
  local set = key(kind, pipeline)
  for _, id in ipairs(redis.call('ZRANGE', set, 0, n - 1)) do
    if ended < n then fail(set, id) end
  end
end
local leases = key(LEASES, pipeline)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', '(' .. now, 'LIMIT', 0, n)) do
  if ended < n then fail(leases, id) end
end
flush_ends(now)
return ended
