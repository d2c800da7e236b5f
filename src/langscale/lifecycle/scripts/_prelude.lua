-- Prepended to every partition script (langscale.lifecycle.scripts renders the kinds).
-- ARGV[1..5] are the same for every such script: the partition's key prefix
-- ("{<namespace>:<n>}:"), the seconds a run's hash and its event stream live after it
-- ends, the most events a stream keeps, and the deployment's prefix ("{<namespace>}:")
-- that channel names start with.
local P = ARGV[1]
local RESULT_TTL = tonumber(ARGV[2])
local STREAM_TTL = tonumber(ARGV[3])
local MAXLEN = tonumber(ARGV[4])
local G = ARGV[5]
--KINDS--
local FINAL = {succeeded = true, failed = true, cancelled = true}

local function key(kind, id) return P .. kind .. ':' .. id end

-- One clock: every time in the protocol is Redis server time, never a process clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Appends an event to a run's stream. Its entry id is "<n>-0", n the run's next event
-- number, so a reader who missed events knows how many (a gap) from the ids alone.
local function emit(run, id, type, data)
  local seq = redis.call('HINCRBY', run, 'seq', 1)
  local events = key(EVENTS, id)
  redis.call('XADD', events, 'MAXLEN', '~', MAXLEN, seq .. '-0', 't', type, 'd', data)
  if seq == 1 then redis.call('EXPIRE', events, RESULT_TTL) end
  return seq
end

-- Ends a run for good: its final state, output or error, the end event, the notices. The
-- caller has taken it off its queue or lease and checked that it may end now. A failed run
-- keeps its job, for an operator to re-queue it; working fields go.
local function end_run(run, id, pipeline, state, output, error, now, streamed)
  redis.call('HSET', run, 'state', state, 'finished', now)
  if output ~= 'null' then redis.call('HSET', run, 'output', output) end
  if error ~= 'null' then redis.call('HSET', run, 'error', error) end
  redis.call('HDEL', run, 'suspect', 'isolated', 'lost_on', 'last_error', 'trace_span')
  if state == 'failed' then
    redis.call('ZADD', P .. FAILED, now, id)
  else
    redis.call('HDEL', run, 'job')
  end
  redis.call('EXPIRE', run, RESULT_TTL)
  redis.call('DEL', key(REPLAY, id))
  if streamed then
    emit(run, id, 'end',
         '{"state":"' .. state .. '","output":' .. output .. ',"error":' .. error .. '}')
    redis.call('EXPIRE', key(EVENTS, id), STREAM_TTL)
  end
  local done = key(DONE, pipeline) .. ':' .. math.floor(now / 1000)
  redis.call('INCR', done)
  redis.call('EXPIRE', done, 120)
  redis.call('PUBLISH', G .. FINISHED, id)
end

local function wake(pipeline) redis.call('PUBLISH', G .. WAKE .. ':' .. pipeline, '') end
