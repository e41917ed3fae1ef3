-- Finish a task: result, reply note, throughput counter, task statistics, ack + delete.
-- Nothing when stale.
-- KEYS: stream, result, running marker, stats counter, enq guard, task counts, task durations,
--       lease hash, task counts by origin, [reply stream]
-- ARGV: group, consumer, entry id, lease token, result JSON, result ttl ms, task id, status,
--       inline ('1'/'0'), reply maxlen, func id, duration bucket ('' = none), duration s, origin
-- Returns 1, or 0 when the entry is no longer ours
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[8], ARGV[4]) then return 0 end
if tonumber(ARGV[6]) > 0 then
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
else
  -- no result kept (fire-and-forget): drop the guard so the status is not "queued" forever
  redis.call('DEL', KEYS[5])
end
if KEYS[10] then notify(KEYS[10], ARGV[10], ARGV[7], ARGV[8], ARGV[9], ARGV[5]) end
count_task(KEYS[6], KEYS[7], ARGV[11], ARGV[8], ARGV[12], ARGV[13])
redis.call('HINCRBY', KEYS[9], ARGV[14] .. '\31' .. ARGV[8], 1)
redis.call('DEL', KEYS[3])
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], 120)
ack_delete(KEYS[1], ARGV[1], ARGV[3], KEYS[8])
return 1
