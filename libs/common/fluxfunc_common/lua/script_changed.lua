-- A script was published or deleted: bump the version counter and log which script that
-- step changed, atomically, so a worker can tell one step from another (scriptchanges.py).
-- KEYS[1] scripts:version, KEYS[2] scripts:changes; ARGV[1] script id, ARGV[2] stream maxlen.
-- The entry id is `<gen>-0`. If the stream is ahead of the counter (the counter was reset),
-- the log starts over: a worker that finds its steps missing drops everything.
local gen = redis.call('INCR', KEYS[1])
local id = gen .. '-0'
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id, 'script', ARGV[1])
if type(added) == 'table' and added.err then
  redis.call('DEL', KEYS[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id, 'script', ARGV[1])
end
return gen
