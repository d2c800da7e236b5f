-- cancel: end a queued or running run as cancelled. A queued one never starts; a running
-- one's worker is told to stop it, and nothing its attempt writes later is accepted.
-- KEYS[1] the run's hash
-- ARGV[6] run id; ARGV[7] error JSON ({"type": "cancelled", "message": ...})
-- Returns the run's state before the call ('' when there is no such run); a final state
-- means nothing changed.
local run, id = KEYS[1], ARGV[6]
local f = redis.call('HMGET', run, 'state', 'pipeline', 'streamed')
if not f[1] then return '' end
if FINAL[f[1]] then return f[1] end
local pipeline = f[2]
if f[1] == 'queued' then
  redis.call('ZREM', key(QUEUE, pipeline), id)
  redis.call('ZREM', key(SUSPECTS, pipeline), id)
else
  redis.call('ZREM', key(LEASES, pipeline), id)
  redis.call('PUBLISH', G .. CANCEL, id)
end
redis.call('HINCRBY', run, 'fence', 1)
local now = now_ms()
end_run(run, id, pipeline, 'cancelled', 'null', ARGV[7], now, f[3])
flush_ends(now)
return f[1]
