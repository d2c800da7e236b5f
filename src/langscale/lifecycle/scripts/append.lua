-- append: write attempts' events (chunks, waits) to their runs' streams, each only if its
-- fence token is still the run's.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6..] per run: id, fence token, k, then k pairs: event type, data JSON
-- Returns per run: its last event number (0: it has no stream, nobody streams or follows
-- it, so nothing was written); -1 refused (the attempt is stale)
local results = {}
local i = 6
while i <= #ARGV do
  local id, token, k = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local run = key(RUN, id)
  local f = redis.call('HMGET', run, 'fence', 'state', 'streamed')
  if f[1] ~= token or f[2] ~= 'running' then
    results[#results + 1] = -1
  elseif not f[3] then
    results[#results + 1] = 0
  else
    local seq = 0
    for j = i + 3, i + 2 + 2 * k, 2 do seq = emit(run, id, ARGV[j], ARGV[j + 1]) end
    results[#results + 1] = seq
  end
  i = i + 3 + 2 * k
end
return results
