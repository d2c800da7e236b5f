-- registry_read (deployment-wide keys; no partition prelude): the pipelines gateways may
-- accept runs for, with the number of live workers serving each; stale entries are pruned
-- here too, so they go even when no worker is left to prune them.
-- KEYS, ARGV[1], ARGV[3], ARGV[4]: as registry_heartbeat (KEYS[4]: pipelines forgotten)
-- Returns {live workers, then per pipeline: name, definition JSON, live workers serving it}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local served = ARGV[1]
local stale, retention = now - tonumber(ARGV[3]), now - tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stale)
local result = {redis.call('ZCARD', KEYS[1])}
local rows = redis.call('HGETALL', KEYS[2])
for i = 1, #rows, 2 do
  local name = rows[i]
  redis.call('ZREMRANGEBYSCORE', served .. name, '-inf', stale)
  local live = redis.call('ZCARD', served .. name)
  local seen = tonumber(redis.call('ZSCORE', KEYS[3], name) or '0')
  if live == 0 and seen < retention then
    redis.call('HDEL', KEYS[2], name)
    redis.call('ZREM', KEYS[3], name)
    if KEYS[4] then redis.call('ZADD', KEYS[4], now, name) end
  else
    result[#result + 1] = name
    result[#result + 1] = rows[i + 1]
    result[#result + 1] = live
  end
end
return result
