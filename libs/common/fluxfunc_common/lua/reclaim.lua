-- Claim entries idle >= min idle, each with its delivery count, taken under the lease token
-- ARGV[6] (take_lease: the worker that held them before can no longer write).
-- KEYS: stream, lease hash
-- ARGV: group, consumer, min idle ms, cursor, count, lease token
-- Returns {next cursor, {{id, {field, value, ...}}, ...}, {count, ...}, {deleted id, ...}}
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local entries, counts, deleted, live, ghosts = {}, {}, {}, {}, 0
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and e[2] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    entries[#entries + 1] = e
    counts[#counts + 1] = p[1] and p[1][4] or 1
    take_lease(KEYS[2], e[1], ARGV[6])
    live[e[1]] = true
  else
    ghosts = ghosts + 1
  end
end
if r[3] then
  -- Redis >= 7: ids deleted while pending, already removed from the PEL
  for _, id in ipairs(r[3]) do
    deleted[#deleted + 1] = id
    redis.call('HDEL', KEYS[2], id)
  end
elseif ghosts > 0 then
  -- Redis 6.2 answers a deleted entry with a bare nil and keeps it pending (now ours): find
  -- our pending ids in the scanned range that no longer exist and ack them.
  local stop = '+'
  if r[1] ~= '0-0' then stop = '(' .. r[1] end
  local start = ARGV[4]
  if start == '0-0' then start = '-' end
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], start, stop, tonumber(ARGV[5]) * 10 + 100, ARGV[2])
  for _, p in ipairs(mine) do
    if not live[p[1]] and #redis.call('XRANGE', KEYS[1], p[1], p[1]) == 0 then
      redis.call('XACK', KEYS[1], ARGV[1], p[1])
      redis.call('HDEL', KEYS[2], p[1])
      deleted[#deleted + 1] = p[1]
    end
  end
end
return {r[1], entries, counts, deleted}
