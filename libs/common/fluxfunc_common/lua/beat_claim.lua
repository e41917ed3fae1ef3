-- Claim scheduled cron fires in Redis ahead of their moment: take each fire's guard
-- (beat:fired:{cron}:{fire_ms}, the per-fire dedup of cron_fire.lua) before the fire is due,
-- so the script that fires them at the moment does less.
-- ARGV: one JSON array, one array per fire: guard key, task id, guard ttl ms.
-- Returns one character per fire: '1' ours (taken now, or already holding our task id: a
-- claim made before a Beat of this deployment was killed, or a batch sent again), '0' taken
-- by another fire (cron_fire.lua then takes the guard itself and finds it a duplicate).
local claims = cjson.decode(ARGV[1])
local out = {}
for i, c in ipairs(claims) do
  if redis.call('SET', c[1], c[2], 'NX', 'PX', c[3]) or redis.call('GET', c[1]) == c[2] then
    out[i] = '1'
  else
    out[i] = '0'
  end
end
return table.concat(out)
