-- idempotency_guard: an Idempotency-Key used for a thread's runs is checked in the key's
-- own partition too (a thread's runs are made in the thread's partition, so the key there
-- cannot see the same key used with another thread, or without one): the first request
-- holds it there; another request (another body, thread or strategy) is a conflict.
-- KEYS[1] the key in its own partition (keys.Keyspace.idempotency)
-- ARGV[6] idempotency window, s; ARGV[7] request hash; ARGV[8] the request's first run id
-- Returns {'ok'} (first use, or the same request again) | {'conflict', run id}
local held = redis.call('GET', KEYS[1])
if held then
  local run_id, hash = string.match(held, '^(%S+) (%S+)$')
  if hash ~= ARGV[7] then return {'conflict', run_id} end
  return {'ok'}
end
redis.call('SET', KEYS[1], ARGV[8] .. ' ' .. ARGV[7], 'EX', ARGV[6])
return {'ok'}
