-- Hand entries back: still pending but long idle, so any worker's next reclaim takes them.
-- KEYS: stream, lease hash
-- ARGV: group, consumer, idle ms, then pairs of (entry id, lease token)
-- Returns how many were released
local n = 0
for i = 4, #ARGV, 2 do
  if owned(KEYS[1], ARGV[1], ARGV[i], ARGV[2], KEYS[2], ARGV[i + 1]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
