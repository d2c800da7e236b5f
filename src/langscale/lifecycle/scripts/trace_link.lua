-- trace_link: record the span of an attempt on its run and give back the previous
-- attempt's, for the new span to link to; only the attempt holding the fence token may.
-- KEYS[1] the run's hash
-- ARGV[6] fence token; ARGV[7] the attempt's span context (traceparent form)
-- Returns the previous attempt's span context ('' if none), or -1 when refused (stale)
local f = redis.call('HMGET', KEYS[1], 'fence', 'state', 'trace_span')
if f[1] ~= ARGV[6] or f[2] ~= 'running' then return -1 end
redis.call('HSET', KEYS[1], 'trace_span', ARGV[7])
return f[3] or ''
