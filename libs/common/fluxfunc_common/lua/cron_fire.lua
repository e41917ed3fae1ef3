-- Claim one fire of a cron job in Redis: fencing, per-fire dedup and the overlap rule, atomically.
-- KEYS: beat epoch, fired guard (beat:fired:{cron}:{ms}), cron running marker, beat last (HASH)
-- ARGV: my epoch ('' = not fenced: manual run), fired ttl ms, task id, overlap policy
--       ('skip' | 'allow'), result key prefix, running key prefix, enq key prefix,
--       running-marker ttl ms, cron id, fire ms ('' = do not track as the last fire)
-- Returns {'fenced', ''} | {'duplicate', first task id} | {'skipped', task still in flight}
--       | {'fired', previous running task id or ''}
if ARGV[1] ~= '' and tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then
  return {'fenced', ''}
end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
  return {'duplicate', redis.call('GET', KEYS[2]) or ''}
end
if ARGV[10] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[4], ARGV[9]) or '0')
  if tonumber(ARGV[10]) > last then redis.call('HSET', KEYS[4], ARGV[9], ARGV[10]) end
end
local prev = redis.call('GET', KEYS[3])
if ARGV[4] == 'skip' and prev then
  -- in flight = no result yet, and either running (worker marker) or still queued (enq guard);
  -- a task whose result already expired is neither, so it never blocks the job forever
  if redis.call('EXISTS', ARGV[5] .. prev) == 0
     and (redis.call('EXISTS', ARGV[6] .. prev) == 1 or redis.call('EXISTS', ARGV[7] .. prev) == 1) then
    return {'skipped', prev}
  end
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[8])
return {'fired', prev or ''}
