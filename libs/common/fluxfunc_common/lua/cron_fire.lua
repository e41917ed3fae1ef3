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
--       scheduled fire whose guard this caller already took with beat_claim.lua, see below),
--       queued ahead ('1': beat_claim.lua also set its enq marker; its header here is '').
--   fires: JSON [groups, cron ids, task ids]: groups is flat, three items per run of
--       consecutive fires that share a profile and a fire time: the profile (1-based index),
--       the fire ms (a string) and how many fires; cron ids and task ids have one string per
--       fire, in order. A fire's keys: guard = guard prefix .. cron id .. suffix .. ':' ..
--       fire ms; cron running marker = marker prefix .. cron id; enq marker = enq prefix ..
--       task id.
--   A fire claimed ahead does not take its guard here (the Beat took it before the fire was
--   due, off the moment's hot path); it is a duplicate when the job's watermark has already
--   reached its fire time: a job's fires are decided in time order and the watermark moves in
--   the same call as the fire, so a fire sent again (a lost reply, a Beat killed after the
--   call) finds it there. A fire queued ahead has its enq marker already (the watermark is its
--   dedup): its moment is the XADD alone; when the queue is full its marker goes with its
--   guard.
--   A fire whose profile has a delay is a delayed run of a cron fire (``delayed_cron_job``):
--   while its due time (fire ms + delay ms, against Redis TIME) is ahead it goes to the
--   queue's delayed set, as enqueue.lua puts a task with an ETA (the promoter moves it), else
--   onto the stream. The runs of one fire travel in the same call, so a Beat killed at any
--   point has made all of them or none.
--   policy: 'skip' | 'allow' (overlapPolicy), or 'claimed': another deployment claimed
--   this fire in the store; only mark it, so this deployment knows it happened.
-- The per-fire keys travel in ARGV (or are derived from it); fluxfunc supports standalone
-- Redis and Sentinel, not Cluster.
-- Cost: the fires of a moment run back to back, so what a fire costs Redis decides how late
-- the last one is. Every Lua string the script makes (an argument, a decoded one, a join, a
-- reply) costs about a thousand instructions, plus about ten a byte on Redis 7.0.15 (its Lua
-- hashes every byte), and a Lua function call or a table lookup per fire is a sizeable share
-- of the rest: so a fire brings two strings besides its blobs (what fires share is a profile
-- or a group, decoded once per call), fire times are compared as strings, the guard key is
-- built only on the paths that use it, and the common fire runs inline in the main loop.
-- The watermark is one HMGET and one HSET per call (per SLICE values): a leader fires each
-- job's fires in time order (and a fenced one writes nothing), so the newest decided fire of
-- a job in the call is its last (HSET sets repeated fields in order: the last pair wins).
-- Returns {codes, details}: one status character per fire, in order — 'F' fired, 'N' fenced,
-- 'D' duplicate, 'S' skipped, 'X' full (the queue) — and, for each fire that did not fire, in
-- order, its detail: the first task id (duplicate), the task still in flight (skipped), ''.
-- (A batch of thousands of fires mostly fires: a string of codes is far cheaper to build and
-- read than a pair of strings per fire.)
local argv, call = ARGV, redis.call  -- locals: a global costs a table lookup each time
local n = (#argv - 10) / 2
local codes, details = {}, {}  -- codes: a run of fired fires is one string (see unusual)
-- Redis 7 answers SET ... NX GET with nil when it set the key, where SET ... NX answers a
-- status, which becomes a table in Lua (Redis 6.2 has no NX GET)
local nx_get = (redis.REDIS_VERSION_NUM or 0) >= 0x070000

if argv[1] ~= '' and tonumber(call('GET', KEYS[1]) or '0') ~= tonumber(argv[1]) then
  for i = 1, n do details[i] = '' end
  return {string.rep('N', n), details}
end

local profiles, fires = cjson.decode(argv[9]), cjson.decode(argv[10])
local groups, crons, tids = fires[1], fires[2], fires[3]
local max_len = tonumber(argv[5])
local lengths = {}
local moved, m = {}, 0  -- cron id, fire ms: the watermark of each decided fire, in order
local SLICE = 4000  -- values per unpack() (at most about 8,000: the Lua C stack); even

-- each fire's job's watermark before this call (false: none), read when some fires were
-- claimed ahead (only theirs use it)
local marks = {}
local ahead = false
for _, p in ipairs(profiles) do ahead = ahead or p[12] == '1' end
for s = 1, ahead and #crons or 0, SLICE do
  local part = call('HMGET', KEYS[2], unpack(crons, s, math.min(s + SLICE - 1, #crons)))
  if s == 1 then marks = part else for k = 1, #part do marks[s + k - 1] = part[k] end end
end

-- SET key value NX PX ttl: true when the key was absent (and is now set)
local function set_new(key, value, ttl)
  if nx_get then return not call('SET', key, value, 'NX', 'GET', 'PX', ttl) end
  return call('SET', key, value, 'NX', 'PX', ttl) ~= false
end

-- the job's watermark `mark` has reached fire time `ms` (decimal ms: compared as strings when
-- of the same length, which spares a number conversion per fire)
local function reached(mark, ms)
  if #mark == #ms then return mark >= ms end
  return (tonumber(mark) or -1) >= tonumber(ms)
end

-- in flight = no result yet, and either running (worker marker) or still queued (enq marker);
-- a task whose result already expired is neither, so it never blocks the job for ever
local function in_flight(task)
  return call('EXISTS', argv[2] .. task) == 0
     and (call('EXISTS', argv[3] .. task) == 1 or call('EXISTS', argv[4] .. task) == 1)
end

-- (code, detail) of fire i, any profile; p: its profile (see ARGV), ms: its fire time
local function fire(i, p, ms)
  local cron, tid, policy = crons[i], tids[i], p[2]
  if policy == 'claimed' then
    call('SET', argv[8] .. cron .. p[8] .. ':' .. ms, 'elsewhere', 'NX', 'PX', p[9])
    return 'D', ''
  end
  if p[12] == '1' then
    local mark = marks[i]
    if mark and reached(mark, ms) then
      return 'D', call('GET', argv[8] .. cron .. p[8] .. ':' .. ms) or tid
    end
  else
    local guard = argv[8] .. cron .. p[8] .. ':' .. ms
    if not call('SET', guard, tid, 'NX', 'PX', p[9]) then
      return 'D', call('GET', guard) or ''
    end
  end
  if policy == 'skip' then
    local prev = call('GET', argv[7] .. cron)
    if prev and prev ~= tid and in_flight(prev) then
      return 'S', prev  -- final: the guard stays, so a second try is 'duplicate'
    end
  end
  local enq, body, header = argv[4] .. tid, argv[9 + 2 * i], argv[10 + 2 * i]
  if p[10] ~= '0' then
    local due = tonumber(ms) + tonumber(p[10])
    local wait = due - now_ms()
    if wait > 0 then
      if not set_new(enq, header, string.format('%d', tonumber(p[5]) + wait)) then
        return 'D', tid
      end
      call('HSET', p[7], tid, body)
      call('ZADD', p[6], string.format('%d', due), tid)
      return 'F', 'delayed'
    end
  end
  local stream = p[1]
  local length = lengths[stream] or call('XLEN', stream)
  if length >= max_len then
    call('DEL', argv[8] .. cron .. p[8] .. ':' .. ms)
    return 'X', ''
  end
  if not set_new(enq, header, p[5]) then
    return 'D', tid  -- this task id is already enqueued
  end
  add_task_entry(stream, tid, p[4], argv[6], body)
  lengths[stream] = length + 1
  if policy == 'skip' then call('SET', argv[7] .. cron, tid, 'PX', p[3]) end
  return 'F'
end

local fired = 0  -- fired fires in a row not yet in codes

-- a fire that did not fire: its code, after the run of fired fires before it, and its detail
local function unusual(code, detail)
  if fired > 0 then codes[#codes + 1], fired = string.rep('F', fired), 0 end
  codes[#codes + 1], details[#details + 1] = code, detail
end

local i = 0
for g = 1, #groups, 3 do
  local p, ms, count = profiles[groups[g]], groups[g + 1], groups[g + 2]
  local scheduled, claimed = p[11] == '1', p[2] == 'claimed'
  if scheduled and p[12] == '1' and p[2] == 'allow' and p[10] == '0' then
    -- the common profile (scheduled, claimed ahead, 'allow', due now): fire()'s steps for
    -- it, inline, with what the group shares read once and reached()'s common case inline
    local stream, ttl, func, origin, enq = p[1], p[5], p[4], argv[6], argv[4]
    local queued = p[13] == '1'
    local length = lengths[stream] or call('XLEN', stream)
    for k = i + 1, i + count do
      local cron, tid, mark = crons[k], tids[k], marks[k]
      if mark and (#mark == #ms and mark >= ms or #mark ~= #ms and reached(mark, ms)) then
        unusual('D', call('GET', argv[8] .. cron .. p[8] .. ':' .. ms) or tid)
      elseif length >= max_len then
        call('DEL', argv[8] .. cron .. p[8] .. ':' .. ms)
        if queued then call('DEL', enq .. tid) end
        unusual('X', '')
      elseif queued  -- its enq marker set ahead (beat_claim.lua), else set_new() inline:
          or nx_get and not call('SET', enq .. tid, argv[10 + 2 * k], 'NX', 'GET', 'PX', ttl)
          or not nx_get and call('SET', enq .. tid, argv[10 + 2 * k], 'NX', 'PX', ttl) then
        add_task_entry(stream, tid, func, origin, argv[9 + 2 * k])
        length, fired = length + 1, fired + 1
        moved[m + 1], moved[m + 2], m = cron, ms, m + 2
      else
        unusual('D', tid)  -- this task id is already enqueued
      end
    end
    lengths[stream] = length
  else
    for k = i + 1, i + count do
      local code, detail = fire(k, p, ms)
      if code == 'F' then fired = fired + 1 else unusual(code, detail) end
      if scheduled and (code == 'F' or code == 'S' or claimed) then
        moved[m + 1], moved[m + 2], m = crons[k], ms, m + 2
      end
    end
  end
  i = i + count
end

for s = 1, m, SLICE do call('HSET', KEYS[2], unpack(moved, s, math.min(s + SLICE - 1, m))) end
if fired > 0 then codes[#codes + 1] = string.rep('F', fired) end
return {table.concat(codes), details}
