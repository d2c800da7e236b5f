-- thread_delete: delete a thread that has no run that has not ended: its hash, history,
-- log and list, and its listing entry. Its runs stay (they end with their own TTL).
-- KEYS[1] the thread's hash; KEYS[2] its queue (list); KEYS[3] its log; KEYS[4] its history
-- ARGV[6] tenant; ARGV[7] thread ("<tenant>:<thread id>")
-- Returns {'deleted'} | {'none'} (no such thread) | {'busy', head run id, its state}
local thread = ARGV[7]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'none'} end
admit_head(thread, now_ms()) -- drops runs that expired while waiting
local head = redis.call('LINDEX', KEYS[2], 0)
if head then return {'busy', head, redis.call('HGET', key(RUN, head), 'state')} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', key(THREADS, ARGV[6]), string.sub(thread, #ARGV[6] + 2))
return {'deleted'}
