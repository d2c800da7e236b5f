-- requeue_failed: an operator puts a failed run back on its queue, with the job it kept;
-- attempts and crashes count afresh; a webhook delivery still due for its end is dropped.
-- KEYS[1] the run's hash
-- ARGV[6] run id
-- Returns 1; 0 if the run is not failed; -1 if its job is no longer kept
local run, id = KEYS[1], ARGV[6]
local f = redis.call('HMGET', run, 'state', 'job', 'pipeline', 'streamed')
if f[1] ~= 'failed' then return 0 end
if not f[2] then return -1 end
local now = now_ms()
redis.call('HSET', run, 'state', 'queued', 'attempts', 0, 'crashes', 0)
redis.call('HDEL', run, 'output', 'error', 'started', 'finished')
redis.call('HINCRBY', run, 'fence', 1)
redis.call('EXPIRE', run, RESULT_TTL)
redis.call('ZREM', P .. FAILED, id)
-- Its end's webhook, if still due, is superseded: its next end notifies (a new webhook-id),
-- and a deliverer still holding an attempt of the old one records nothing.
redis.call('ZREM', P .. WEBHOOKS, id)
redis.call('HDEL', run, 'webhook_attempts', 'webhook_state')
local thread = redis.call('HGET', run, 'thread')
if thread then -- it rejoins its thread at the end, and starts when its turn comes
  redis.call('RPUSH', key(THREAD_QUEUE, thread), id)
  admit_head(thread, now)
else
  redis.call('ZADD', key(QUEUE, f[3]), now, id)
end
if f[4] then
  emit(run, id, 'state', '{"state":"queued","requeued":true}')
  redis.call('EXPIRE', key(EVENTS, id), RESULT_TTL)
end
wake(f[3])
return 1
