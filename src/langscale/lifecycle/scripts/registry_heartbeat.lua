-- registry_heartbeat (deployment-wide keys; no partition prelude): a worker says it lives
-- and which pipelines it serves, or that it leaves. Workers whose heartbeats stopped are
-- forgotten, and a pipeline nobody has served for the retention time with them.
-- KEYS[1] workers (sorted set: worker id -> last heartbeat, ms)
-- KEYS[2] pipelines (hash: name -> definition JSON)
-- KEYS[3] pipelines last served (sorted set: name -> last heartbeat of a worker serving it)
-- KEYS[4] pipelines forgotten (sorted set: name -> when; their queued runs are failed)
-- ARGV[1] served-by key prefix; ARGV[2] worker id; ARGV[3] heartbeats older than this
-- (ms) are stale; ARGV[4] retention of an unserved pipeline, ms; ARGV[5] 1: beat, 0: leave
-- ARGV[6..] pairs: pipeline name, definition JSON
-- Returns the number of live workers.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local served, worker = ARGV[1], ARGV[2]
local stale, retention = now - tonumber(ARGV[3]), now - tonumber(ARGV[4])
for i = 6, #ARGV, 2 do
  if ARGV[5] == '1' then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[i]) end
    redis.call('ZADD', served .. ARGV[i], now, worker)
    redis.call('ZADD', KEYS[3], now, ARGV[i])
  else
    redis.call('ZREM', served .. ARGV[i], worker)
  end
end
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[1], now, worker)
else
  redis.call('ZREM', KEYS[1], worker)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stale)
for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do
  redis.call('ZREMRANGEBYSCORE', served .. name, '-inf', stale)
  local seen = tonumber(redis.call('ZSCORE', KEYS[3], name) or '0')
  if seen < retention and redis.call('ZCARD', served .. name) == 0 then
    redis.call('HDEL', KEYS[2], name)
    redis.call('ZREM', KEYS[3], name)
    if KEYS[4] then redis.call('ZADD', KEYS[4], now, name) end
  end
end
return redis.call('ZCARD', KEYS[1])
