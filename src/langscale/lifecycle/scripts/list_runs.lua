-- list_runs: the next runs of listing indexes (sorted sets: run id -> created ms), newest
-- first, strictly after a cursor, merged across the indexes given. An entry whose run has
-- expired is a hole: skipped and removed from its index.
-- KEYS[1] the partition's clock hash (unused here: it routes the call to the partition)
-- ARGV[6] the highest created ms to return ('+inf'); ARGV[7] the run id of the cursor at
--   that score ('': the score itself is included); ARGV[8] the lowest created ms ('-inf')
-- ARGV[9] most entries to examine; ARGV[10] f, then ARGV[11..10+f] the run fields wanted
-- ARGV[11+f..] the indexes ('*': the tenant index of every tenant of this partition)
-- Returns {1 if more entries may follow, created ms and id of the last entry examined
--   ('' if none), then per live run: id, created ms, then its f fields}
local top, after, bottom, n = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local f = tonumber(ARGV[10])
local fields = {}
for i = 11, 10 + f do fields[#fields + 1] = ARGV[i] end
local indexes = {}
for i = 11 + f, #ARGV do
  if ARGV[i] == '*' then
    for _, tenant in ipairs(redis.call('SMEMBERS', P .. TENANTS)) do
      indexes[#indexes + 1] = P .. RUNS .. ':' .. tenant
    end
  else
    indexes[#indexes + 1] = ARGV[i]
  end
end

local entries, more = {}, 0
for _, index in ipairs(indexes) do
  local rows = revrange_after(index, top, after, bottom, n)
  if #rows >= 2 * n then more = 1 end
  for i = 1, #rows, 2 do entries[#entries + 1] = {tonumber(rows[i + 1]), rows[i], index} end
end
table.sort(entries, function(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  return a[2] > b[2]
end)
if #entries > n then more = 1 end

local result = {more, '', ''}
for i = 1, math.min(n, #entries) do
  local score, id, index = entries[i][1], entries[i][2], entries[i][3]
  result[2], result[3] = score, id
  local row = redis.call('HMGET', key(RUN, id), unpack(fields))
  local live = false
  for j = 1, f do live = live or row[j] ~= false end
  if live then
    result[#result + 1] = id
    result[#result + 1] = score
    for j = 1, f do result[#result + 1] = row[j] or false end
  else
    redis.call('ZREM', index, id)
  end
end
return result
