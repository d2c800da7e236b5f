-- replay: LLM answers a run's attempts completed, so a retry does not pay for them again.
-- A call's slot is its input digest and its number among the attempt's calls with that
-- input; only the attempt holding the run's fence token may read or fill slots.
-- KEYS[1] the run's hash; KEYS[2] the run's replay hash
-- ARGV[6] fence token; ARGV[7] 'recall' or 'remember'; ARGV[8] input digest;
-- ARGV[9] (remember) the slot; ARGV[10] (remember) the answer JSON
-- Returns recall: {slot, the stored answer or ''}; remember: 1. -1 when refused (stale).
local f = redis.call('HMGET', KEYS[1], 'fence', 'state', 'attempts')
if f[1] ~= ARGV[6] or f[2] ~= 'running' then return -1 end
if ARGV[7] == 'recall' then
  local n = redis.call('HINCRBY', KEYS[2], 'n:' .. f[3] .. ':' .. ARGV[8], 1)
  local slot = ARGV[8] .. ':' .. n
  redis.call('EXPIRE', KEYS[2], RESULT_TTL)
  return {slot, redis.call('HGET', KEYS[2], 'v:' .. slot) or ''}
end
redis.call('HSET', KEYS[2], 'v:' .. ARGV[9], ARGV[10])
redis.call('EXPIRE', KEYS[2], RESULT_TTL)
return 1
