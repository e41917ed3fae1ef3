-- Start tasks read some other way (blocking read, reclaim, own pending): start_task each.
-- KEYS, 3 per task: result, cancel flag, running marker
-- ARGV: consumer, marker ttl ms, then the attempt of each task
-- Returns one start code per task (0 = run, 1 = already completed, 2 = cancelled)
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local k = i * 3
  out[i + 1] = start_task(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[1], ARGV[i + 3], ARGV[2])
end
return out
