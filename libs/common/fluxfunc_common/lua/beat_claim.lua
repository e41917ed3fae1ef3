-- Claim scheduled cron fires in Redis ahead of their moment: take each fire's guard
-- (beat:fired:{cron}:{fire_ms}, the per-fire dedup of cron_fire.lua) before the fire is due,
-- so the script that fires them at the moment does less; and for the common fire (overlap
-- 'allow', due now) set its task's enq marker too (the task reads as queued from here on:
-- at most the Beat's lead, under a second, before it is on the stream).
-- ARGV: one JSON array, one array per fire: guard key, task id, guard ttl ms, and for a fire
--       whose marker is set here also its enq key and the marker's ttl ms; then the enq
--       header JSON of each such fire, in order.
-- Returns one character per fire: '1' ours (taken now, or already holding our task id: a
-- claim made before a Beat of this deployment was killed, or a batch sent again), '0' taken
-- by another fire (cron_fire.lua then takes the guard itself and finds it a duplicate).
-- A marker is set only for a fire that is ours, and NX: a marker already there (a claim sent
-- again, or the task already queued) stays as it is.
local claims = cjson.decode(ARGV[1])
local out = {}
local h = 1
for i, c in ipairs(claims) do
  local mine = redis.call('SET', c[1], c[2], 'NX', 'PX', c[3]) or redis.call('GET', c[1]) == c[2]
  if c[4] then
    h = h + 1
    if mine then redis.call('SET', c[4], ARGV[h], 'NX', 'PX', c[5]) end
  end
  out[i] = mine and '1' or '0'
end
return table.concat(out)
