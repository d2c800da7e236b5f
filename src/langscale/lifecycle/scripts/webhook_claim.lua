-- webhook_claim: take due webhook deliveries of ended runs for one delivery attempt each.
-- A taken delivery is due again after the lease, so a deliverer that dies mid-delivery
-- loses nothing: another takes it then (at least once).
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6] lease, ms; ARGV[7] most deliveries to take; ARGV[8] f, ARGV[9..8+f] run fields
-- Returns {now ms, then per delivery: id, its attempt number (1, 2...), webhook URL, then
--   the f fields}; a delivery whose run expired is dropped and returned with attempt 0
local now = now_ms()
local lease, n, f = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local fields = {'webhook'}
for i = 9, 8 + f do fields[#fields + 1] = ARGV[i] end
local result = {now}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. WEBHOOKS, '-inf', now, 'LIMIT', 0, n)) do
  local run = key(RUN, id)
  local row = redis.call('HMGET', run, unpack(fields))
  result[#result + 1] = id
  if not row[1] then
    redis.call('ZREM', P .. WEBHOOKS, id)
    result[#result + 1] = 0
  else
    redis.call('ZADD', P .. WEBHOOKS, 'XX', now + lease, id)
    result[#result + 1] = redis.call('HINCRBY', run, 'webhook_attempts', 1)
  end
  for j = 1, #fields do result[#result + 1] = row[j] or false end
end
return result
