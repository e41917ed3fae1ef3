-- Owner-checked ack + delete of an entry whose task already has a result.
-- KEYS: stream
-- ARGV: group, consumer, entry id, count
if not owned(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4]) then return 0 end
ack_delete(KEYS[1], ARGV[1], ARGV[3])
return 1
