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
-- An index is pruned (and its TTL renewed) at most once per this many ms.
local PRUNE_MS = 10000
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

-- Threads: a thread's runs that have not ended wait in its list (THREAD_QUEUE) in order;
-- only the head is on its pipeline's queue, its suspects, or running. Admits the head:
-- drops runs that expired while waiting, and puts a queued head that is on no queue on its
-- pipeline's queue (idempotent: a head already queued or running is left as it is).
local function admit_head(thread, now)
  local list = key(THREAD_QUEUE, thread)
  while true do
    local head = redis.call('LINDEX', list, 0)
    if not head then return end
    local run = key(RUN, head)
    local f = redis.call('HMGET', run, 'state', 'pipeline')
    if f[1] == 'running' then return end
    if f[1] == 'queued' then
      if not redis.call('ZSCORE', key(QUEUE, f[2]), head)
        and not redis.call('ZSCORE', key(SUSPECTS, f[2]), head) then
        -- After an interrupt, not due before the interrupted attempt's partial answer is
        -- in the history (history_partial.lua makes it due then) or its lease lapsed.
        local gate = tonumber(redis.call('HGET', key(THREAD, thread), 'partial_until'))
        redis.call('ZADD', key(QUEUE, f[2]), math.max(now, gate or 0), head)
        redis.call('EXPIRE', run, RESULT_TTL)
        redis.call('PUBLISH', G .. WAKE .. ':' .. f[2], P)
      end
      return
    end
    redis.call('LPOP', list)
  end
end

-- A run of a thread that ends leaves it; the next one may start.
local function leave_thread(thread, id, now)
  redis.call('LREM', key(THREAD_QUEUE, thread), 1, id)
  redis.call('HSET', key(THREAD, thread), 'updated', now)
  admit_head(thread, now)
end

-- Removes from a thread's history what the runs `ids` (a set) wrote, keeping the rest in
-- order and the history's TTL. Returns how many messages went.
local function drop_turns(thread, ids)
  local history = key(HISTORY, thread)
  local entries = redis.call('LRANGE', history, 0, -1)
  local kept = {}
  for _, entry in ipairs(entries) do
    if not ids[string.match(entry, '^(%S+) ')] then kept[#kept + 1] = entry end
  end
  if #kept < #entries then
    local ttl = redis.call('TTL', history)
    redis.call('DEL', history)
    for i = 1, #kept, 1000 do
      redis.call('RPUSH', history, unpack(kept, i, math.min(i + 999, #kept)))
    end
    if #kept > 0 and ttl > 0 then redis.call('EXPIRE', history, ttl) end
  end
  return #entries - #kept
end

-- A listing index (sorted set: id -> created ms) read newest first from a cursor: up to n
-- entries (id, score, id, score...) at or below `top` and at or above `bottom`, strictly
-- after the id `after` at the score `top` ('': none). Ties at a score come in descending id
-- order, so the ones at or above the cursor's id were listed already.
local function revrange_after(index, top, after, bottom, n)
  local skip = 0
  if after ~= '' then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, top, top)) do
      if id >= after then skip = skip + 1 end
    end
  end
  return redis.call('ZREVRANGEBYSCORE', index, top, bottom, 'WITHSCORES', 'LIMIT', skip, n)
end

-- Runs this script ended: how many per pipeline, and their ids (see flush_ends).
local ended_per_pipeline, ended_ids = {}, {}

-- Fields of a run hash that ending it reads (END_FIELDS, in this order): its thread and
-- webhook, whether an LLM replay hash was written, and the working fields it drops.
local END_FIELDS = {'thread', 'webhook', 'replay', 'suspect', 'isolated', 'lost_on',
                    'last_error', 'trace_span'}

-- Ends a run for good: its final state, output or error, the end event. The caller has
-- taken it off its queue or lease and checked that it may end now; `known`, when given,
-- holds the run's END_FIELDS the caller read already (one HMGET for both). A failed run
-- keeps its job, for an operator to re-queue it; the others' job is emptied in the same
-- HSET; working fields go (HDEL only of those present). The run hash gets its TTL here,
-- once. The completion counter and the notice are written once per script by flush_ends,
-- which every script that ends runs calls before it returns.
local function end_run(run, id, pipeline, state, output, error, now, streamed, known)
  local fields = {'state', state, 'finished', now}
  if output ~= 'null' then fields[#fields + 1] = 'output'; fields[#fields + 1] = output end
  if error ~= 'null' then fields[#fields + 1] = 'error'; fields[#fields + 1] = error end
  if state ~= 'failed' then fields[#fields + 1] = 'job'; fields[#fields + 1] = '' end
  redis.call('HSET', run, unpack(fields))
  local links = known or redis.call('HMGET', run, unpack(END_FIELDS))
  if links[1] then leave_thread(links[1], id, now) end
  if state == 'failed' then redis.call('ZADD', P .. FAILED, now, id) end
  local working = {}
  for i = 4, #END_FIELDS do
    if links[i] then working[#working + 1] = END_FIELDS[i] end
  end
  if #working > 0 then redis.call('HDEL', run, unpack(working)) end
  redis.call('EXPIRE', run, RESULT_TTL)
  if links[3] then redis.call('DEL', key(REPLAY, id)) end
  if streamed then
    emit(run, id, 'end',
         '{"state":"' .. state .. '","output":' .. output .. ',"error":' .. error .. '}')
    redis.call('EXPIRE', key(EVENTS, id), STREAM_TTL)
  end
  -- A run with a webhook: its delivery is due now, in the same step that ends it.
  if links[2] then
    redis.call('ZADD', P .. WEBHOOKS, 'NX', now, id)
    redis.call('PUBLISH', G .. WEBHOOK, P)
  end
  ended_per_pipeline[pipeline] = (ended_per_pipeline[pipeline] or 0) + 1
  ended_ids[#ended_ids + 1] = id
end

-- Ended runs' records for the notice, id -> the run's RECORD_FIELDS values (see
-- notice_record); a waiting gateway then needs no read.
local ended_records, noticed = {}, 0
local NOTICE_MAX = 4096  -- bytes of output, error and metadata a notice carries per run

-- The record of a run this script has just ended, for the finished notice (unless large),
-- from what the script read (`f`: the run's fields by name) and wrote.
local function notice_record(id, state, output, error, now, f)
  local metadata = f.metadata or ''
  if #output + #error + #metadata > NOTICE_MAX then return end
  ended_records[id] = {f.pipeline or '', state, f.attempts or '0',
                       output ~= 'null' and output or false,
                       error ~= 'null' and error or false, false, f.worker or false,
                       f.tenant or false, f.metadata or false, f.created or false,
                       f.started or false, tostring(now)}
  noticed = noticed + 1
end

-- After the runs a script ended: one per-second completion counter update per pipeline
-- (its TTL set when the counter is new), and one notice on the finished channel: their
-- ids, space separated, then, after a newline, the records notice_record made, as JSON.
local function flush_ends(now)
  if #ended_ids == 0 then return end
  for pipeline, n in pairs(ended_per_pipeline) do
    local done = key(DONE, pipeline) .. ':' .. math.floor(now / 1000)
    if redis.call('INCRBY', done, n) == n then redis.call('EXPIRE', done, 120) end
  end
  local notice = table.concat(ended_ids, ' ')
  if noticed > 0 then notice = notice .. '\n' .. cjson.encode(ended_records) end
  redis.call('PUBLISH', G .. FINISHED, notice)
end

-- A wake-up names the partition (its key prefix): a worker asks only that one.
local function wake(pipeline) redis.call('PUBLISH', G .. WAKE .. ':' .. pipeline, P) end

-- One command for many values (ZREM ids, ZADD score-id pairs: step even), in chunks: Lua
-- unpacks at most a few thousand values at once.
local function call_in_chunks(command, name, values, step)
  for i = 1, #values, step do
    redis.call(command, name, unpack(values, i, math.min(i + step - 1, #values)))
  end
end

-- The listing index entries of the runs a script creates, written with one ZADD per index
-- by flush_indexes (a script creating several submits' runs collects them all first).
local function new_indexed() return {names = {}, entries = {}, tenant_of = {}} end

-- Each index is pruned and given its TTL at most once per PRUNE_MS (a marker key per
-- index, which forget deletes), not on every submit; a tenant's own index also names it
-- in the partition's tenants (for admins' listing).
local function flush_indexes(indexed, now)
  for _, index in ipairs(indexed.names) do
    call_in_chunks('ZADD', index, indexed.entries[index], 1000)
    local marker = P .. PRUNED .. ':' .. string.sub(index, #P + 1)
    if redis.call('SET', marker, 1, 'NX', 'PX', math.min(PRUNE_MS, 1000 * RESULT_TTL)) then
      local tenant = indexed.tenant_of[index]
      if tenant then redis.call('SADD', P .. TENANTS, tenant) end
      redis.call('ZREMRANGEBYSCORE', index, '-inf', now - 2000 * RESULT_TTL)
      redis.call('EXPIRE', index, 2 * RESULT_TTL)  -- a tenant gone quiet leaves no index
    end
  end
end

-- Creates a submit's runs (enqueue_many, thread_submit): each run's hash, its listing indexes
-- and, when streamed, its first event; then prunes the indexes. The runs' ids and jobs are
-- ARGV[first], ARGV[first + 1]... and their hashes KEYS[first_key]...; `fields` are more
-- fields of every run; `created(id)` places each new run (a queue, a thread). HSETNX: the
-- same runs created again (a retried call) change nothing; `fresh`: the caller checked
-- that none exists (no HSETNX). Each run hash is written with one HSET; with
-- `ttl_at_end` it gets no TTL now (its end sets it: a queued run waits on its queue until
-- it runs or is cancelled). The index entries go to `indexed` (new_indexed()) when given,
-- for the caller to flush_indexes once; else they are written here.
local function create_runs(pipeline, tenant, metadata, streamed, index_names, extra_json,
                           first_key, first, count, now, fields, created, ttl_at_end,
                           fresh, indexed)
  local indexes = {}
  for name in string.gmatch(index_names, '[^\n]+') do indexes[#indexes + 1] = name end
  local extra = extra_json ~= '' and cjson.decode(extra_json) or {}
  local common = {'pipeline', pipeline, 'tenant', tenant, 'created', now}
  for _, value in ipairs(fields) do common[#common + 1] = value end
  if metadata ~= '' then common[#common + 1] = 'metadata'; common[#common + 1] = metadata end
  for field, value in pairs(extra) do common[#common + 1] = field; common[#common + 1] = value end
  if streamed == '1' then common[#common + 1] = 'streamed'; common[#common + 1] = 1 end
  local added = {}
  for i = 0, count - 1 do
    local id, run = ARGV[first + 2 * i], KEYS[first_key + i]
    if fresh or redis.call('HSETNX', run, 'state', 'queued') == 1 then
      redis.call('HSET', run, 'state', 'queued', 'job', ARGV[first + 1 + 2 * i], unpack(common))
      if streamed == '1' then emit(run, id, 'state', '{"state":"queued"}') end
      if not ttl_at_end then redis.call('EXPIRE', run, RESULT_TTL) end
      added[#added + 1] = now
      added[#added + 1] = id
      created(id)
    end
  end
  local batch = indexed or new_indexed()
  for i, index in ipairs(indexes) do
    if not batch.entries[index] then
      batch.names[#batch.names + 1] = index
      batch.entries[index] = {}
    end
    if i == 1 then batch.tenant_of[index] = tenant end
    local entries = batch.entries[index]
    for _, value in ipairs(added) do entries[#entries + 1] = value end
  end
  if not indexed then flush_indexes(batch, now) end
end

-- The Idempotency-Key check of an enqueue: the reply to give when the key is held (the
-- same request again: its run and that run's state; another request: a conflict), or nil
-- when the request may go on (no key, or the run it named has expired).
local function idempotent_reply(idem, request_hash)
  if request_hash == '' then return nil end
  local held = redis.call('GET', idem)
  if not held then return nil end
  local run_id, hash = string.match(held, '^(%S+) (%S+)$')
  if hash ~= request_hash then return {'conflict', run_id} end
  local state = redis.call('HGET', key(RUN, run_id), 'state')
  if state then return {'replay', run_id, state} end
  return nil
end
