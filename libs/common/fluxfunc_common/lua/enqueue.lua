-- Enqueue tasks, each now or (ETA in the future by Redis TIME) into the delayed set.
-- Each task is all-or-nothing; tasks of one call are handled in order, so a repeated
-- idempotency key inside one batch is a duplicate too.
-- KEYS, 5 per task: stream, enq guard, delayed zset, delayed body hash, idempotency key
--   (any placeholder when the task has none)
-- ARGV, 10 per task: task id, func id, origin, envelope JSON, max_len, header JSON,
--   eta ms ('' = none), result ttl ms, idempotency ttl ms, idempotency value ('' = no key:
--   else "<task id>\31<func id>", so a reuse for another func is told apart)
-- Returns per task {'ok', entry id} | {'delayed', due ms} | {'dup', idempotency value or task
--   id} | {'full'}
-- What can fail (number formatting, XLEN of a key of another type) happens before the
-- first write: a script error leaves no idempotency key or guard of a task never enqueued.
local now

local function enqueue(k, a)
  local tid, idem = ARGV[a + 1], ARGV[a + 10] ~= '' and KEYS[k + 5]
  local due = tonumber(ARGV[a + 7])
  local delay = 0
  if due then
    now = now or now_ms()
    if due > now then delay = due - now end
  end
  local guard_ttl = string.format('%d', tonumber(ARGV[a + 8]) + delay)
  local due_text = delay > 0 and string.format('%d', due)
  local full = delay == 0 and redis.call('XLEN', KEYS[k + 1]) >= tonumber(ARGV[a + 5])
  if idem and not redis.call('SET', idem, ARGV[a + 10], 'NX', 'PX', ARGV[a + 9]) then
    return {'dup', redis.call('GET', idem)}
  end
  if not redis.call('SET', KEYS[k + 2], ARGV[a + 6], 'NX', 'PX', guard_ttl) then
    return {'dup', tid}
  end
  if delay > 0 then
    redis.call('HSET', KEYS[k + 4], tid, ARGV[a + 4])
    redis.call('ZADD', KEYS[k + 3], due_text, tid)
    return {'delayed', string.format('%d', due)}
  end
  if full then
    -- refuse without a trace: undo both guards, never trim to make room
    redis.call('DEL', KEYS[k + 2])
    if idem then redis.call('DEL', idem) end
    return {'full'}
  end
  return {'ok', add_task_entry(KEYS[k + 1], tid, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])}
end

local out = {}
for i = 0, #KEYS / 5 - 1 do
  out[i + 1] = enqueue(i * 5, i * 10)
end
return out
