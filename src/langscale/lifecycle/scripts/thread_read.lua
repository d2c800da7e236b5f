-- thread_read: a thread as one consistent view (a script, not MULTI: Redis Cluster clients
-- have no transactions).
-- KEYS[1] the thread's hash; KEYS[2] its queue (list); KEYS[3] its log; KEYS[4] its history
-- Returns {its hash as field, value pairs ({} when there is no such thread), its runs not
--   ended (the head first), its latest run ids (oldest first), its history's length}
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {{}, {}, {}, 0} end
return {fields, redis.call('LRANGE', KEYS[2], 0, -1), redis.call('LRANGE', KEYS[3], 0, -1),
        redis.call('LLEN', KEYS[4])}
