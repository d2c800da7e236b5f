-- queue_stats: figures of pipelines' queues in one partition, for admission, /v1/queue,
-- metrics and autoscaling. O(log n) per pipeline: counts by score, never by scanning.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6] rate window, seconds; ARGV[7..] pipelines
-- Returns {now ms, then per pipeline: due, deferred, running, suspects, oldest due score
--   (-1: none), runs ended in the window}
local now = now_ms()
local second = math.floor(now / 1000)
local window = tonumber(ARGV[6])
local result = {now}
for i = 7, #ARGV do
  local p = ARGV[i]
  local queue = key(QUEUE, p)
  local head = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  local done = 0
  for s = second - window, second - 1 do
    done = done + tonumber(redis.call('GET', key(DONE, p) .. ':' .. s) or '0')
  end
  result[#result + 1] = redis.call('ZCOUNT', queue, '-inf', now)
  result[#result + 1] = redis.call('ZCOUNT', queue, '(' .. now, '+inf')
  result[#result + 1] = redis.call('ZCARD', key(LEASES, p))
  result[#result + 1] = redis.call('ZCARD', key(SUSPECTS, p))
  result[#result + 1] = head[2] or '-1'
  result[#result + 1] = done
end
return result
