-- replay: the slot of an LLM call of a retried attempt, and the answer an earlier attempt
-- stored there (remember.lua), so a retry does not pay for a call twice. A call's slot is
-- its input digest and its number among the attempt's calls with that input; only the
-- attempt holding the run's fence token may read slots.
-- KEYS[1] the run's hash; KEYS[2] the run's replay hash
-- ARGV[6] fence token; ARGV[7] input digest
-- Returns {slot, the stored answer or ''}, or -1 when refused (stale)
local f = redis.call('HMGET', KEYS[1], 'fence', 'state', 'attempts')
if f[1] ~= ARGV[6] or f[2] ~= 'running' then return -1 end
local n = redis.call('HINCRBY', KEYS[2], 'n:' .. f[3] .. ':' .. ARGV[7], 1)
local slot = ARGV[7] .. ':' .. n
redis.call('EXPIRE', KEYS[2], RESULT_TTL)
redis.call('HSET', KEYS[1], 'replay', 1)  -- the run's end deletes the replay hash
return {slot, redis.call('HGET', KEYS[2], 'v:' .. slot) or ''}
