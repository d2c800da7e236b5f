-- history_append: an attempt adds chat messages to its thread's history. Only the attempt
-- holding the run's fence token may, and only to its own thread's history; what earlier
-- attempts of the run wrote is dropped first, so a retried run never repeats its turn (a
-- run writes while it is its thread's head, the thread's only writer: its entries are the
-- history's last ones). The history keeps its latest messages, for a TTL after the last.
-- KEYS[1] the run's hash; KEYS[2] the thread's history (list); KEYS[3] the thread's hash
-- ARGV[6] run id; ARGV[7] fence token; ARGV[8] the thread ("<tenant>:<thread id>")
-- ARGV[9] most messages kept; ARGV[10] TTL, s; ARGV[11..] messages (JSON)
-- Returns the history's length; -1 refused (the attempt is stale); -2 the run is not of
-- this thread
local run, history, id = KEYS[1], KEYS[2], ARGV[6]
local f = redis.call('HMGET', run, 'fence', 'state', 'attempts', 'thread')
if f[1] ~= ARGV[7] or f[2] ~= 'running' then return -1 end
if f[4] ~= ARGV[8] then return -2 end
local prefix, mine = id .. ' ', id .. ' ' .. f[3] .. ' '
while true do
  local last = redis.call('LINDEX', history, -1)
  if not last or last:sub(1, #prefix) ~= prefix or last:sub(1, #mine) == mine then break end
  redis.call('RPOP', history)
end
for i = 11, #ARGV do redis.call('RPUSH', history, mine .. ARGV[i]) end
redis.call('LTRIM', history, -tonumber(ARGV[9]), -1)
redis.call('EXPIRE', history, ARGV[10])
redis.call('EXPIRE', KEYS[3], ARGV[10])
return redis.call('LLEN', history)
