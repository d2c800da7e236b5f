-- remember: store LLM answers attempts completed, for a later attempt of the same run to
-- replay (see replay.lua); each only if its attempt still holds the run's fence token.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6..] per answer 4 values: run id, fence token, slot, answer JSON
-- Returns per answer: 1 stored, -1 refused (the attempt is stale)
local results = {}
for i = 6, #ARGV, 4 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', key(RUN, id), 'fence', 'state')
  if f[1] ~= token or f[2] ~= 'running' then
    results[#results + 1] = -1
  else
    local replay = key(REPLAY, id)
    redis.call('HSET', replay, 'v:' .. ARGV[i + 2], ARGV[i + 3])
    redis.call('EXPIRE', replay, RESULT_TTL)
    redis.call('HSET', key(RUN, id), 'replay', 1)  -- the run's end deletes the replay hash
    results[#results + 1] = 1
  end
end
return results
