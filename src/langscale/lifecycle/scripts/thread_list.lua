-- thread_list: the next threads of a tenant in this partition, newest created first,
-- strictly after a cursor. A listed thread that expired is a hole: skipped and removed.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6] tenant; ARGV[7] the highest created ms to return ('+inf'); ARGV[8] the thread
--   id of the cursor at that score ('': the score itself is included); ARGV[9] most
--   entries to examine
-- Returns {1 if more entries may follow, created ms and id of the last entry examined
--   ('' if none), then per live thread: id, created ms, updated ms, runs, runs not ended,
--   messages}
local tenant, top, after, n = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local index = key(THREADS, tenant)
local rows = revrange_after(index, top, after, '-inf', n)
local result = {#rows >= 2 * n and 1 or 0, '', ''}
for i = 1, #rows, 2 do
  local id, score = rows[i], rows[i + 1]
  result[2], result[3] = score, id
  local thread = tenant .. ':' .. id
  local f = redis.call('HMGET', key(THREAD, thread), 'created', 'updated', 'runs')
  if f[1] then
    result[#result + 1] = id
    result[#result + 1] = f[1]
    result[#result + 1] = f[2] or f[1]
    result[#result + 1] = f[3] or 0
    result[#result + 1] = redis.call('LLEN', key(THREAD_QUEUE, thread))
    result[#result + 1] = redis.call('LLEN', key(HISTORY, thread))
  else
    redis.call('ZREM', index, id)
  end
end
return result
