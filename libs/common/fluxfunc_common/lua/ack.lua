-- Owner-checked ack + delete of an entry whose task already has a result.
-- KEYS: stream, lease hash
-- ARGV: group, consumer, entry id, lease token
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], KEYS[2], ARGV[4]) then return 0 end
ack_delete(KEYS[1], ARGV[1], ARGV[3], KEYS[2])
return 1
