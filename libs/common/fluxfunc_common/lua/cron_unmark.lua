-- Undo the running marker of a fire that did not happen (claimed elsewhere, queue full).
-- KEYS: cron running marker. ARGV: task id of the undone fire, previous task id ('' = none),
--       running-marker ttl ms
-- Returns 1 when restored, 0 when the marker has moved on since.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
