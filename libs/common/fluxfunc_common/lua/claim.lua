-- Read up to COUNT new entries, probing the streams in priority order, and start each one in
-- the same call (start_task): one round trip instead of a read plus a check.
-- Keys met while reading are built from the prefixes keys.py gives (Redis Cluster is not
-- supported, so undeclared keys are fine; their names still come from one place).
-- Every entry read is taken under the lease token ARGV[8] (take_lease).
-- KEYS: streams in priority order, then their lease hashes in the same order
-- ARGV: group, consumer, count, result key prefix, cancel key prefix, running key prefix,
--       marker ttl ms, lease token
-- Returns {{stream index, {entry, ...}, {start code, ...}}, ...}
local group, consumer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local streams = #KEYS / 2
local out = {}
for i = 1, streams do
  if want <= 0 then break end
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', KEYS[i], '>')
  if r and r[1] and #r[1][2] > 0 then
    local entries, codes = r[1][2], {}
    for j, e in ipairs(entries) do
      local tid, body
      local f = e[2]
      for k = 1, #f, 2 do
        if f[k] == 'task' then tid = f[k + 1] elseif f[k] == 'body' then body = f[k + 1] end
      end
      codes[j] = 0
      take_lease(KEYS[streams + i], e[1], ARGV[8])
      if tid then
        local attempt = 1
        local ok, env = pcall(cjson.decode, body or '')
        if ok and type(env) == 'table' and tonumber(env.attempt) then attempt = env.attempt end
        codes[j] = start_task(ARGV[4] .. tid, ARGV[5] .. tid, ARGV[6] .. tid, consumer, attempt, ARGV[7])
      end
    end
    out[#out + 1] = {i, entries, codes}
    want = want - #entries
  end
end
return out
