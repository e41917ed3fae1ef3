-- Extend the lease only while we still hold it (compare-and-extend) and our epoch is current.
-- KEYS: beat leader, beat epoch. ARGV: token, lease ms, epoch
-- Returns 1 when renewed, 0 when the lease or the epoch is no longer ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[3]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
