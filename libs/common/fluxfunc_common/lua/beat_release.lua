-- Give the lease up on shutdown (compare-and-delete), so a standby takes over at once.
-- KEYS: beat leader. ARGV: token
-- Returns 1 when released, 0 when the lease was not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
