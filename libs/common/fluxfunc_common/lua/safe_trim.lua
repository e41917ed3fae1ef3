-- Trim entries below every group's smallest pending id and last-delivered-id: only entries
-- that were delivered and are no longer pending can go.
-- KEYS: stream
-- ARGV: '~' or '='
-- Returns the number of entries removed
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local function id_lt(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local threshold
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local candidates = {f['last-delivered-id']}
  local summary = redis.call('XPENDING', KEYS[1], f['name'])
  if summary[2] then candidates[2] = summary[2] end
  for _, id in ipairs(candidates) do
    if not threshold or id_lt(id, threshold) then threshold = id end
  end
end
if not threshold then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1], threshold)
