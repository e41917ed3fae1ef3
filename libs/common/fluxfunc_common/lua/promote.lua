-- Move due delayed tasks (Redis TIME) onto their stream.
-- KEYS: delayed zset, delayed body hash, stream
-- ARGV: batch size
-- Returns {moved, next due ms or false}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now_ms()), 'LIMIT', 0, ARGV[1])
local moved = 0
for _, tid in ipairs(ids) do
  local body = redis.call('HGET', KEYS[2], tid)
  if body then
    local func, origin = '', ''
    local ok, env = pcall(cjson.decode, body)
    if ok and type(env) == 'table' then
      if type(env.funcId) == 'string' then func = env.funcId end
      if type(env.origin) == 'string' then origin = env.origin end
    end
    add_task_entry(KEYS[3], tid, func, origin, body)
    moved = moved + 1
  end
  redis.call('ZREM', KEYS[1], tid)
  redis.call('HDEL', KEYS[2], tid)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {moved, nxt[2] or false}
