-- Fire a batch of cron fires. Each fire is atomic: fencing, per-fire dedup, the overlap rule,
-- the enqueue itself (the steps of enqueue.lua for a task without ETA or idempotency key) and
-- the job's last-fire watermark, so a Beat killed at any point has either fired a fire
-- completely or not at all.
-- KEYS: the fencing epoch (the Beat partition's of these fires, or the chores lease's), beat
--       last (HASH cron id → last fire ms)
-- ARGV: my epoch ('' = not fenced: manual run), result key prefix, running key prefix,
--       enq key prefix, stream max length, origin, fires (JSON array, one array of strings
--       per fire: fired guard key, cron running marker key, stream key, enq marker key,
--       cron id, fire ms ('' = not a scheduled fire: leave the watermark), guard ttl ms,
--       task id, policy, running-marker ttl ms, func id, result ttl ms, due ms ('' = now),
--       delayed zset key, delayed body hash key, claimed ahead ('1': a scheduled fire whose
--       guard this caller already took with beat_claim.lua, see below)), then two per fire:
--       envelope JSON, enq header JSON
--   A fire claimed ahead does not take its guard here (the Beat took it before the fire was
--   due, off the moment's hot path); it is a duplicate when the job's watermark has already
--   reached its fire time: a job's fires are decided in time order and the watermark moves in
--   the same call as the fire, so a fire sent again (a lost reply, a Beat killed after the
--   call) finds it there.
--   A fire with a due ms is a delayed run of a cron fire (``delayed_cron_job``): while its due
--   time (Redis TIME) is ahead it goes to the queue's delayed set, as enqueue.lua puts a task
--   with an ETA (the promoter moves it), else onto the stream. The runs of one fire travel
--   in the same call, so a Beat killed at any point has made all of them or none.
--   policy: 'skip' | 'allow' (overlapPolicy), or 'claimed': another deployment claimed
--   this fire in the store; only mark it, so this deployment knows it happened.
-- The per-fire keys travel in ARGV (a JSON string packs and parses far faster than a dozen
-- arguments per fire); fluxfunc supports standalone Redis and Sentinel, not Cluster.
-- The watermark is one HSET per call: a leader fires each job's fires in time order (and a
-- fenced one writes nothing), so the newest decided fire of a call is the job's last.
-- Returns {codes, details}: one status character per fire, in order — 'F' fired, 'N' fenced,
-- 'D' duplicate, 'S' skipped, 'X' full (the queue) — and, for each fire that did not fire, in
-- order, its detail: the first task id (duplicate), the task still in flight (skipped), ''.
-- (A batch of thousands of fires mostly fires: a string of codes is far cheaper to build and
-- read than a pair of strings per fire.)
local fires = cjson.decode(ARGV[7])
local codes, details = {}, {}
local CODE = {fired = 'F', duplicate = 'D', skipped = 'S', full = 'X'}

if ARGV[1] ~= '' and tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then
  for i = 1, #fires do details[i] = '' end
  return {string.rep('N', #fires), details}
end

local max_len = tonumber(ARGV[5])
local lengths = {}
local last = {}  -- cron id → newest decided fire ms of this call
local decided = {}  -- cron id → its watermark before this call (fires claimed ahead only)
local ahead = {}
for _, f in ipairs(fires) do
  if f[16] == '1' and decided[f[5]] == nil then
    decided[f[5]] = false
    ahead[#ahead + 1] = f[5]
  end
end
if #ahead > 0 then
  local marks = redis.call('HMGET', KEYS[2], unpack(ahead))
  for i, cron in ipairs(ahead) do decided[cron] = tonumber(marks[i]) or false end
end

-- in flight = no result yet, and either running (worker marker) or still queued (enq marker);
-- a task whose result already expired is neither, so it never blocks the job for ever
local function in_flight(task)
  return redis.call('EXISTS', ARGV[2] .. task) == 0
     and (redis.call('EXISTS', ARGV[3] .. task) == 1 or redis.call('EXISTS', ARGV[4] .. task) == 1)
end

local function fire(f, body, header)
  local guard, marker, stream, enq, tid, policy = f[1], f[2], f[3], f[4], f[8], f[9]
  if policy == 'claimed' then
    redis.call('SET', guard, 'elsewhere', 'NX', 'PX', f[7])
    return {'duplicate', ''}
  end
  if f[16] == '1' then
    local mark = decided[f[5]]
    if mark and mark >= tonumber(f[6]) then return {'duplicate', redis.call('GET', guard) or tid} end
  elseif not redis.call('SET', guard, tid, 'NX', 'PX', f[7]) then
    return {'duplicate', redis.call('GET', guard) or ''}
  end
  if policy == 'skip' then
    local prev = redis.call('GET', marker)
    if prev and prev ~= tid and in_flight(prev) then
      return {'skipped', prev}  -- final: the guard stays, so a second try is 'duplicate'
    end
  end
  local due = tonumber(f[13] or '')
  local wait = due and due - now_ms() or 0
  if wait > 0 then
    if not redis.call('SET', enq, header, 'NX', 'PX', string.format('%d', tonumber(f[12]) + wait)) then
      return {'duplicate', tid}
    end
    redis.call('HSET', f[15], tid, body)
    redis.call('ZADD', f[14], string.format('%d', due), tid)
    return {'fired', 'delayed'}
  end
  local length = lengths[stream] or redis.call('XLEN', stream)
  if length >= max_len then
    redis.call('DEL', guard)
    return {'full', ''}
  end
  if not redis.call('SET', enq, header, 'NX', 'PX', f[12]) then
    return {'duplicate', tid}  -- this task id is already enqueued
  end
  local entry = add_task_entry(stream, tid, f[11], ARGV[6], body)
  lengths[stream] = length + 1
  if policy == 'skip' then redis.call('SET', marker, tid, 'PX', f[10]) end
  return {'fired', entry}
end

for i, f in ipairs(fires) do
  local r = fire(f, ARGV[6 + 2 * i], ARGV[7 + 2 * i])
  local status = r[1]
  codes[i] = CODE[status]
  if status ~= 'fired' then details[#details + 1] = r[2] end
  if f[6] ~= '' and (status == 'fired' or status == 'skipped' or f[9] == 'claimed') then
    last[f[5]] = f[6]
  end
end

local pairs_ = {}
for cron, ms in pairs(last) do
  pairs_[#pairs_ + 1] = cron
  pairs_[#pairs_ + 1] = ms
end
if #pairs_ > 0 then redis.call('HSET', KEYS[2], unpack(pairs_)) end
return {table.concat(codes), details}
