-- Start tasks read some other way (blocking read, reclaim, own pending): start_task each.
-- Each entry is taken under its lease token (take_lease) whatever its start code.
-- KEYS, 4 per task: result, cancel flag, running marker, lease hash of its stream
-- ARGV: consumer, marker ttl ms, then (attempt, entry id, lease token) of each task
-- Returns one start code per task (0 = run, 1 = already completed, 2 = cancelled)
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, a = i * 4, i * 3 + 3
  take_lease(KEYS[k + 4], ARGV[a + 1], ARGV[a + 2])
  out[i + 1] = start_task(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[1], ARGV[a], ARGV[2])
end
return out
