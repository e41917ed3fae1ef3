-- Move an entry to the dead-letter stream, write its final "dead" result, notify, ack + delete.
-- KEYS: stream, dead stream, result, running marker, task counts, lease hash,
--       task counts by origin, [reply stream]
-- ARGV: group, consumer, entry id, count, result JSON ('' = none), result ttl ms, task id,
--       status, inline, reply maxlen, reason, queue, func id, envelope JSON, lease token, origin
-- Returns 1, or 0 when the entry is no longer ours
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[6], ARGV[15]) then return 0 end
redis.call('XADD', KEYS[2], '*', 'reason', ARGV[11], 'queue', ARGV[12], 'entry', ARGV[3],
           'task', ARGV[7], 'func', ARGV[13], 'count', ARGV[4], 'body', ARGV[14],
           'time', string.format('%d', now_ms()))
if ARGV[5] ~= '' then
  if tonumber(ARGV[6]) > 0 then redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6]) end
  redis.call('DEL', KEYS[4])
  if KEYS[8] then notify(KEYS[8], ARGV[10], ARGV[7], ARGV[8], ARGV[9], ARGV[5]) end
  redis.call('HINCRBY', KEYS[5], ARGV[13] .. '\31' .. ARGV[8], 1)
  redis.call('HINCRBY', KEYS[7], ARGV[16] .. '\31' .. ARGV[8], 1)
end
ack_delete(KEYS[1], ARGV[1], ARGV[3], KEYS[6])
return 1
