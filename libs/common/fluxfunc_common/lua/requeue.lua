-- Put a dead letter's task back on its queue and delete the letter, atomically.
-- KEYS: dead stream, stream, enq guard, result
-- ARGV: letter id, max_len, task id, func id, origin, envelope JSON, header JSON, guard ttl ms
-- Returns {'ok', entry id} | {'gone'} | {'full'}
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return {'gone'} end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {'full'} end
redis.call('DEL', KEYS[4])
redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[8])
local id = add_task_entry(KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
redis.call('XDEL', KEYS[1], ARGV[1])
return {'ok', id}
