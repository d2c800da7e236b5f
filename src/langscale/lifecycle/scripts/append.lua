-- append: write attempts' events (chunks, waits) to their runs' streams, each only if its
-- fence token is still the run's. Idempotent: each event carries its number within its
-- attempt, and events the run already has from this attempt are skipped, so a call
-- retried after a lost reply (a Redis restart) never repeats a chunk.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6..] per run: id, fence token, number of its first event in the attempt (-1: not
--   numbered, always written), k, then k pairs: event type, data JSON
-- Returns per run: its last event number (0: it has no stream, nobody streams or follows
-- it, so nothing was written); -1 refused (the attempt is stale)
local results = {}
local i = 6
while i <= #ARGV do
  local id, token = ARGV[i], ARGV[i + 1]
  local first, k = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local run = key(RUN, id)
  local f = redis.call('HMGET', run, 'fence', 'state', 'streamed', 'seq', 'wrote_by', 'wrote')
  if f[1] ~= token or f[2] ~= 'running' then
    results[#results + 1] = -1
  elseif not f[3] then
    results[#results + 1] = 0
  else
    local seq = tonumber(f[4]) or 0
    local wrote = (f[5] == token and tonumber(f[6])) or 0
    for n = 0, k - 1 do
      local j = i + 4 + 2 * n
      if first < 0 or first + n >= wrote then seq = emit(run, id, ARGV[j], ARGV[j + 1]) end
    end
    if first >= 0 and first + k > wrote then
      redis.call('HSET', run, 'wrote_by', token, 'wrote', first + k)
    end
    results[#results + 1] = seq
  end
  i = i + 4 + 2 * k
end
return results
