-- Put the next attempt in the delayed set and ack + delete the current entry.
-- KEYS: stream, delayed zset, delayed body hash, running marker, enq guard, lease hash
-- ARGV: group, consumer, entry id, lease token, task id, envelope JSON, due ms, header JSON, guard ttl ms
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[6], ARGV[4]) then return 0 end
redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[5])
redis.call('DEL', KEYS[4])
redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[9])
ack_delete(KEYS[1], ARGV[1], ARGV[3], KEYS[6])
return 1
