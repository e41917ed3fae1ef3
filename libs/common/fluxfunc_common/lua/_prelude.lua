-- Prepended to every script by streams.py.

-- Is entry `id` pending for `consumer` with delivery count `count`? A stale worker (its entry
-- reclaimed by another, or re-delivered since) gets false, so it can never ack or renew the
-- entry of someone else: XACK and XCLAIM themselves check no owner.
local function owned(stream, group, id, consumer, count)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1)
  if type(p) ~= 'table' or p.err or not p[1] then return false end
  return p[1][2] == consumer and p[1][4] == tonumber(count)
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

local function ack_delete(stream, group, id)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
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
