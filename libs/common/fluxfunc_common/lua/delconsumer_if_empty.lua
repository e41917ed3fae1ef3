-- Delete a consumer only when it has nothing pending: DELCONSUMER would discard its entries.
-- KEYS: stream
-- ARGV: group, consumer
-- Returns 1 when the consumer is gone (or never was), 0 when it still has pending entries
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(p) ~= 'table' or p.err then return 1 end
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
