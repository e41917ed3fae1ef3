-- Keep a Beat in the set of live Beats that share the cron partitions, and count them.
-- KEYS: beat members (ZSET token → expiry ms, Redis time). ARGV: token, ttl ms ('0' = leave)
-- Returns the number of live Beats (this one included unless it left).
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
