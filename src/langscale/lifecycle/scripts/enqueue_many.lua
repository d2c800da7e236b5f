-- enqueue_many: record new runs as queued and put them on their pipelines' queues: the
-- submits a gateway received at about the same time for one partition, in one call (group
-- commit). Each submit (a group) on its own terms: its runs all or none, in one step with
-- admission control and its Idempotency-Key check; for the whole call, one existence check
-- of the new runs, one ZADD per queue and per listing index, one wake per pipeline.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- KEYS[2..] the new runs' hashes, in the order of their ids below (every group's)
-- ARGV[6] admission limit: refuse a group if the queue would hold more due runs (0: none)
-- ARGV[7] idempotency window, seconds
-- ARGV[8..] per group: request hash ('' when no key), its idempotency key ('' none),
--   pipeline, tenant, metadata JSON ('' none), 1 when streamed, the listing indexes it
--   joins (sorted sets: id -> created ms; newline separated; pruned of entries older than
--   twice the result TTL), more fields of each run hash as a JSON object ('' none), e.g.
--   its webhook, count, then count pairs: run id, job JSON
-- Returns per group its length n, then n values: 'queued', created ms | 'replay', run id,
--   state | 'conflict', run id | 'full', due runs in the queue
local now = now_ms()
local limit, window = tonumber(ARGV[6]), ARGV[7]
-- None of the runs exists unless this call is a retried one (its reply was lost): then
-- each run is created only if it is not there yet (HSETNX).
local fresh = redis.call('EXISTS', unpack(KEYS, 2)) == 0
local due, queued, results, indexed = {}, {}, {}, new_indexed()
local i, first_key = 8, 2
while i <= #ARGV do
  local hash, idem, pipeline, tenant = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local count = tonumber(ARGV[i + 8])
  local first = i + 9
  local reply = idempotent_reply(idem, hash)
  local queue = key(QUEUE, pipeline)
  if not reply and limit > 0 then
    due[pipeline] = due[pipeline] or redis.call('ZCOUNT', queue, '-inf', now)
    if due[pipeline] + count > limit then reply = {'full', due[pipeline]} end
  end
  if not reply then
    queued[pipeline] = queued[pipeline] or {}
    local entries = queued[pipeline]
    create_runs(pipeline, tenant, ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7],
                first_key, first, count, now, {},
                function(id) entries[#entries + 1] = now; entries[#entries + 1] = id end,
                true, fresh, indexed)
    if due[pipeline] then due[pipeline] = due[pipeline] + count end
    if hash ~= '' then redis.call('SET', idem, ARGV[first] .. ' ' .. hash, 'EX', window) end
    reply = {'queued', now}
  end
  results[#results + 1] = #reply
  for _, value in ipairs(reply) do results[#results + 1] = value end
  i = first + 2 * count
  first_key = first_key + count
end
flush_indexes(indexed, now)
for pipeline, entries in pairs(queued) do
  call_in_chunks('ZADD', key(QUEUE, pipeline), entries, 1000)
  wake(pipeline)
end
return results
