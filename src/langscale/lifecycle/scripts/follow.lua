-- follow: where a reader of a run's events starts. A run that has no stream (nobody asked
-- for one) gets one now if it has not ended, starting with its current state, so the
-- reader misses nothing that follows; an ended run's end is read from its hash instead.
-- KEYS[1] the run's hash
-- ARGV[6] run id
-- Returns {} when there is no such run, else {state, last event number, 1 if it has a stream}
local run, id = KEYS[1], ARGV[6]
local f = redis.call('HMGET', run, 'state', 'seq', 'streamed', 'attempts')
if not f[1] then return {} end
if not f[3] and not FINAL[f[1]] then
  redis.call('HSET', run, 'streamed', 1)
  local data = '{"state":"' .. f[1] .. '"}'
  if f[1] == 'running' then
    data = '{"state":"running","attempt":' .. f[4] .. '}'
  end
  local seq = emit(run, id, 'state', data)
  redis.call('EXPIRE', key(EVENTS, id), RESULT_TTL)
  return {f[1], seq, 1}
end
return {f[1], tonumber(f[2]) or 0, f[3] and 1 or 0}
