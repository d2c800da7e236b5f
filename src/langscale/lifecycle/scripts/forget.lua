-- forget: delete a run that ended, before its TTL would: its hash, stream and LLM replay,
-- its listing entries and any webhook delivery still due; a thread's run, its turns in
-- the thread's history and its place in the thread's log too.
-- KEYS[1] the run's hash
-- ARGV[6] run id; ARGV[7..] the listing indexes it is in
-- Returns the run's state ('' when there is no such run); unless it is final, nothing
-- was deleted
local run, id = KEYS[1], ARGV[6]
local state, thread = unpack(redis.call('HMGET', run, 'state', 'thread'))
if not state then return '' end
if not FINAL[state] then return state end
if thread then
  drop_turns(thread, {[id] = true})
  redis.call('LREM', key(THREAD_LOG, thread), 0, id)
end
redis.call('DEL', run, key(EVENTS, id), key(REPLAY, id))
redis.call('ZREM', P .. FAILED, id)
redis.call('ZREM', P .. WEBHOOKS, id)
for i = 7, #ARGV do
  redis.call('ZREM', ARGV[i], id)
  -- The next submit to the index prunes it and sets its TTL again (it may be gone now).
  redis.call('DEL', P .. PRUNED .. ':' .. string.sub(ARGV[i], #P + 1))
end
return state
