-- Prepended to every script by luascripts.py (the one loader). The key layout and the stream
-- protocol these helpers implement are described in docs/redis-protocol.md.

-- Is entry `id` pending for `consumer` under the lease `token`? The token is written into the
-- stream's lease hash when a consumer takes the entry (claim, start, reclaim) and is what the
-- consumer holds; a stale run (its entry reclaimed by another worker, or by this one for a new
-- run) holds an older token and gets false, so it can never ack or renew the entry of someone
-- else: XACK and XCLAIM themselves check no owner. The delivery count is not part of it:
-- Redis raises it on every re-read (XREADGROUP ... 0 after a lost reply, a restart), so the
-- rightful owner would be refused by its own re-read. Token '' checks the consumer only (a
-- malformed entry dead-lettered in the same breath as it was read).
local function owned(stream, group, id, consumer, leases, token)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1)
  if type(p) ~= 'table' or p.err or not p[1] or p[1][2] ~= consumer then return false end
  if token == '' then return true end
  return redis.call('HGET', leases, id) == token
end

-- Take the lease of entry `id` under `token` (the previous holder's token stops counting).
local function take_lease(leases, id, token)
  redis.call('HSET', leases, id, token)
end

-- Add a task to a queue stream: the one layout of a task entry, written by every producer
-- (enqueue, promote, requeue, cron_fire) and read by streams/claim.py: the task id, its func
-- id and origin (for a look at the stream without decoding bodies) and the envelope JSON.
-- Returns the new entry id.
local function add_task_entry(stream, task, func, origin, body)
  return redis.call('XADD', stream, '*', 'task', task, 'func', func, 'origin', origin, 'body', body)
end

-- Redis TIME in epoch milliseconds (clients' clocks never decide).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A reply notification for a waiting Server; NOMKSTREAM so a dead Server's expired stream
-- is not recreated.
local function notify(reply, maxlen, task, status, inline, result)
  if inline == '1' then
    redis.call('XADD', reply, 'NOMKSTREAM', 'MAXLEN', '~', maxlen, '*',
               'task', task, 'status', status, 'result', result)
  else
    redis.call('XADD', reply, 'NOMKSTREAM', 'MAXLEN', '~', maxlen, '*', 'task', task, 'status', status)
  end
end

local function ack_delete(stream, group, id, leases)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  redis.call('HDEL', leases, id)
end

-- Start one task just read (claim, start): 1 when it already has a result (a re-delivered
-- task that completed: never run it twice), 2 when it has a cancel flag, else 0 after
-- setting its running marker {"consumer", "startTime" (Redis TIME, s), "attempt"}.
local function start_task(result, cancel, running, consumer, attempt, ttl_ms)
  if redis.call('EXISTS', result) == 1 then return 1 end
  if redis.call('EXISTS', cancel) == 1 then return 2 end
  local marker = string.format('{"consumer":"%s","startTime":%.3f,"attempt":%d}',
                               consumer, now_ms() / 1000, tonumber(attempt) or 1)
  redis.call('SET', running, marker, 'PX', ttl_ms)
  return 0
end

-- Deployment-wide task statistics (taskstats.py): one count per (func, final status), and the
-- run time into its histogram bucket plus the sum ('' bucket = no run time to record).
local function count_task(counts, durations, func, status, bucket, seconds)
  redis.call('HINCRBY', counts, func .. '\31' .. status, 1)
  if bucket ~= '' then
    redis.call('HINCRBY', durations, func .. '\31' .. bucket, 1)
    redis.call('HINCRBYFLOAT', durations, func .. '\31sum', seconds)
  end
end
