-- Fire a batch of cron fires. Each fire is atomic: fencing, per-fire dedup, the overlap rule,
-- the enqueue itself (the steps of enqueue.lua for a task without ETA or idempotency key) and
-- the job's last-fire watermark, so a Beat killed at any point has either fired a fire
-- completely or not at all.
-- KEYS: the fencing epoch (the Beat partition's of these fires, or the chores lease's), beat
--       last (HASH cron id → last fire ms)
-- ARGV: my epoch ('' = not fenced: manual run), result key prefix, running key prefix,
--       enq key prefix, stream max length, origin, cron running marker key prefix, fired
--       guard key prefix, profiles, fires, then two per fire: envelope JSON, enq header JSON.
--   profiles: JSON array of what fires share, one array of strings each: stream key, policy,
--       running-marker ttl ms, func id, result ttl ms, delayed zset key, delayed body hash
--       key, guard suffix ('#manual', '#d<delay s>'), guard ttl ms, delay ms ('0' = now),
--       scheduled ('1': move the job's watermark; '' = a manual run), claimed ahead ('1': a
--       scheduled fire whose guard this caller already took with beat_claim.lua, see below).
--   fires: one flat JSON array, four items per fire: its profile (1-based index), cron id,
--       fire ms, task id. Its keys: guard = guard prefix .. cron id .. suffix .. ':' .. fire
--       ms; cron running marker = marker prefix .. cron id; enq marker = enq prefix .. task id.
--   A fire claimed ahead does not take its guard here (the Beat took it before the fire was
--   due, off the moment's hot path); it is a duplicate when the job's watermark has already
--   reached its fire time: a job's fires are decided in time order and the watermark moves in
--   the same call as the fire, so a fire sent again (a lost reply, a Beat killed after the
--   call) finds it there.
--   A fire whose profile has a delay is a delayed run of a cron fire (``delayed_cron_job``):
--   while its due time (fire ms + delay ms, against Redis TIME) is ahead it goes to the
--   queue's delayed set, as enqueue.lua puts a task with an ETA (the promoter moves it), else
--   onto the stream. The runs of one fire travel in the same call, so a Beat killed at any
--   point has made all of them or none.
--   policy: 'skip' | 'allow' (overlapPolicy), or 'claimed': another deployment claimed
--   this fire in the store; only mark it, so this deployment knows it happened.
-- The per-fire keys travel in ARGV (or are derived from it); fluxfunc supports standalone
-- Redis and Sentinel, not Cluster. Every Lua string the script makes (decoded, joined, a
-- reply) costs about a thousand instructions, so a fire brings four (what its job shares is a
-- profile, decoded once per call) and the guard key is only built on the paths that use it.
-- The watermark is one HSET per call: a leader fires each job's fires in time order (and a
-- fenced one writes nothing), so the newest decided fire of a call is the job's last.
-- Returns {codes, details}: one status character per fire, in order — 'F' fired, 'N' fenced,
-- 'D' duplicate, 'S' skipped, 'X' full (the queue) — and, for each fire that did not fire, in
-- order, its detail: the first task id (duplicate), the task still in flight (skipped), ''.
-- (A batch of thousands of fires mostly fires: a string of codes is far cheaper to build and
-- read than a pair of strings per fire.)
local n = (#ARGV - 10) / 2
local codes, details = {}, {}
local CODE = {fired = 'F', duplicate = 'D', skipped = 'S', full = 'X'}

if ARGV[1] ~= '' and tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then
  for i = 1, n do details[i] = '' end
  return {string.rep('N', n), details}
end

local profiles, fires = cjson.decode(ARGV[9]), cjson.decode(ARGV[10])
local max_len = tonumber(ARGV[5])
local lengths = {}
local last = {}  -- cron id → newest decided fire ms of this call
local decided = {}  -- cron id → its watermark before this call (fires claimed ahead only)
local ahead = {}
for k = 2, #fires, 4 do
  local cron = fires[k]
  if profiles[fires[k - 1]][12] == '1' and decided[cron] == nil then
    decided[cron] = false
    ahead[#ahead + 1] = cron
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

-- (status, detail) of one fire; p: its profile (see ARGV)
local function fire(p, cron, ms, tid, body, header)
  local policy = p[2]
  if policy == 'claimed' then
    redis.call('SET', ARGV[8] .. cron .. p[8] .. ':' .. ms, 'elsewhere', 'NX', 'PX', p[9])
    return 'duplicate', ''
  end
  if p[12] == '1' then
    local mark = decided[cron]
    if mark and mark >= tonumber(ms) then
      return 'duplicate', redis.call('GET', ARGV[8] .. cron .. p[8] .. ':' .. ms) or tid
    end
  else
    local guard = ARGV[8] .. cron .. p[8] .. ':' .. ms
    if not redis.call('SET', guard, tid, 'NX', 'PX', p[9]) then
      return 'duplicate', redis.call('GET', guard) or ''
    end
  end
  if policy == 'skip' then
    local prev = redis.call('GET', ARGV[7] .. cron)
    if prev and prev ~= tid and in_flight(prev) then
      return 'skipped', prev  -- final: the guard stays, so a second try is 'duplicate'
    end
  end
  local enq = ARGV[4] .. tid
  if p[10] ~= '0' then
    local due = tonumber(ms) + tonumber(p[10])
    local wait = due - now_ms()
    if wait > 0 then
      if not redis.call('SET', enq, header, 'NX', 'PX', string.format('%d', tonumber(p[5]) + wait)) then
        return 'duplicate', tid
      end
      redis.call('HSET', p[7], tid, body)
      redis.call('ZADD', p[6], string.format('%d', due), tid)
      return 'fired', 'delayed'
    end
  end
  local stream = p[1]
  local length = lengths[stream] or redis.call('XLEN', stream)
  if length >= max_len then
    redis.call('DEL', ARGV[8] .. cron .. p[8] .. ':' .. ms)
    return 'full', ''
  end
  if not redis.call('SET', enq, header, 'NX', 'PX', p[5]) then
    return 'duplicate', tid  -- this task id is already enqueued
  end
  local entry = add_task_entry(stream, tid, p[4], ARGV[6], body)
  lengths[stream] = length + 1
  if policy == 'skip' then redis.call('SET', ARGV[7] .. cron, tid, 'PX', p[3]) end
  return 'fired', entry
end

for i = 1, n do
  local k = 4 * i
  local p, cron, ms = profiles[fires[k - 3]], fires[k - 2], fires[k - 1]
  local status, detail = fire(p, cron, ms, fires[k], ARGV[9 + 2 * i], ARGV[10 + 2 * i])
  codes[i] = CODE[status]
  if status ~= 'fired' then details[#details + 1] = detail end
  if p[11] == '1' and (status == 'fired' or status == 'skipped' or p[2] == 'claimed') then
    last[cron] = ms
  end
end

local pairs_ = {}
for cron, ms in pairs(last) do
  pairs_[#pairs_ + 1] = cron
  pairs_[#pairs_ + 1] = ms
end
if #pairs_ > 0 then redis.call('HSET', KEYS[2], unpack(pairs_)) end
return {table.concat(codes), details}
