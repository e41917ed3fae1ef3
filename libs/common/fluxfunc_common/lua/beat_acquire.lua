-- Take the Beat leadership lease if it is vacant, and open a new fencing epoch.
-- KEYS: beat leader, beat epoch. ARGV: token, lease ms
-- Returns the new epoch, or false when another Beat holds the lease.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('INCR', KEYS[2])
