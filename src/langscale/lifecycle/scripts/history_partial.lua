-- history_partial: an attempt stopped by an interrupt adds the answer it had produced so
-- far to its thread's history (marked interrupted by the caller), once. The interrupt
-- (thread_submit.lua) changed the run's fence but kept the old token for exactly this
-- write ('partial_fence'), and made the thread's next run due only once this write lands
-- or the attempt's lease would have lapsed ('partial_until'): so the partial answer is in
-- the history before the next run starts, or not at all (too late: refused, never after).
-- KEYS[1] the run's hash; KEYS[2] the thread's history (list); KEYS[3] the thread's hash
-- KEYS[4] the thread's queue (list)
-- ARGV[6] run id; ARGV[7] the attempt's fence token; ARGV[8] the thread
-- ("<tenant>:<thread id>"); ARGV[9] most messages kept; ARGV[10] TTL, s; ARGV[11] the
-- message (JSON; '' when the attempt produced nothing: the next run is let go at once)
-- Returns the history's length; -1 refused (this attempt was not interrupted, or wrote
-- its partial answer already); -2 the run is not of this thread; -3 too late (the next
-- run may have started)
local run, history, thread_hash, id = KEYS[1], KEYS[2], KEYS[3], ARGV[6]
local f = redis.call('HMGET', run, 'partial_fence', 'attempts', 'thread')
if not f[1] or f[1] ~= ARGV[7] then return -1 end
if f[3] ~= ARGV[8] then return -2 end
redis.call('HDEL', run, 'partial_fence')
local now = now_ms()
local gate = redis.call('HMGET', thread_hash, 'partial_run', 'partial_until')
if gate[1] ~= id or now >= tonumber(gate[2]) then return -3 end
redis.call('HDEL', thread_hash, 'partial_run', 'partial_until')
if ARGV[11] ~= '' then
  redis.call('RPUSH', history, id .. ' ' .. f[2] .. ' ' .. ARGV[11])
  redis.call('LTRIM', history, -tonumber(ARGV[9]), -1)
  redis.call('EXPIRE', history, ARGV[10])
end
-- The thread's head waited for this write: due now.
local head = redis.call('LINDEX', KEYS[4], 0)
if head then
  local pipeline = redis.call('HGET', key(RUN, head), 'pipeline')
  local due = pipeline and redis.call('ZSCORE', key(QUEUE, pipeline), head)
  if due and tonumber(due) > now then
    redis.call('ZADD', key(QUEUE, pipeline), now, head)
    wake(pipeline)
  end
end
return redis.call('LLEN', history)
