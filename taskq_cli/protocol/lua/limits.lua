-- limits.lua: set or clear a queue's limits (taskq queue limit, TaskQueue.set_queue_limits). They
-- live in the queue's slot, so fetch.lua enforces them across every worker on Redis's clock.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] concurrency: a number, '-' to clear, '' to leave as it is
-- ARGV[2] rate (starts per window): a number, '-' to clear, '' to leave   ARGV[3] window (ms)
-- Returns {concurrency or '', rate or '', window or ''} as now set.
if ARGV[1] == '-' then
  redis.call('HDEL', K_LIMITS, 'concurrency')
elseif ARGV[1] ~= '' then
  redis.call('HSET', K_LIMITS, 'concurrency', ARGV[1])
end
if ARGV[2] == '-' then
  redis.call('HDEL', K_LIMITS, 'rate', 'window')
  redis.call('DEL', K_STARTS)
elseif ARGV[2] ~= '' then
  redis.call('HSET', K_LIMITS, 'rate', ARGV[2], 'window', ARGV[3])
end
wake() -- a limit raised or cleared: an idle worker looks again
local now = redis.call('HMGET', K_LIMITS, 'concurrency', 'rate', 'window')
return {now[1] or '', now[2] or '', now[3] or ''}
