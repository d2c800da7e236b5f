-- webhook_done: record how a webhook delivery attempt went, only if it is still the
-- delivery's latest attempt (a deliverer slower than its lease changes nothing).
-- KEYS[1] the run's hash
-- ARGV[6] run id; ARGV[7] its attempt number; ARGV[8] 'delivered', 'failed' (given up)
--   or 'retry'; ARGV[9] retry: delay, ms
-- Returns 1 recorded; 0 stale (another attempt took the delivery)
local run, id = KEYS[1], ARGV[6]
if redis.call('HGET', run, 'webhook_attempts') ~= ARGV[7] then return 0 end
if ARGV[8] == 'retry' then
  redis.call('ZADD', P .. WEBHOOKS, 'XX', now_ms() + tonumber(ARGV[9]), id)
else
  redis.call('ZREM', P .. WEBHOOKS, id)
  redis.call('HSET', run, 'webhook_state', ARGV[8])
end
return 1
