-- Renew the lease of entries this consumer still owns; XCLAIM JUSTID resets the idle time
-- and leaves the delivery count and the lease token alone.
-- KEYS: stream, lease hash
-- ARGV: group, consumer, then pairs of (entry id, lease token)
-- Returns the ids no longer owned (lost)
local lost = {}
for i = 3, #ARGV, 2 do
  if owned(KEYS[1], ARGV[1], ARGV[i], ARGV[2], KEYS[2], ARGV[i + 1]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
