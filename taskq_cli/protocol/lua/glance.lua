-- glance.lua: everything the dashboard's overview shows of one queue, read in one call (read-only).
-- A pipeline of one call per queue replaces eight commands per queue: a thousand queues cost a
-- thousand script calls, not eight thousand commands to pack and parse.
-- KEYS: the queue's keys (_lib.lua). ARGV: none.
-- Returns {pending, scheduled, active, dead, waiting, processed|false, failed|false, paused (0/1),
--          concurrency|false, rate|false, window ms|false, oldest pending ready since (ms)|false}:
-- the counts of queue_stats, the paused flag, the limits, and when the next pending task became
-- ready (enqueued, due, or back from the dead-letter queue: the latest of the three).
local ready = false
local head = redis.call('LINDEX', K_PENDING, -1)
if head then
  local meta = load(head)
  if meta then
    ready = math.max(tonumber(meta.enqueued_at) or 0, tonumber(meta.run_at) or 0, tonumber(meta.retried_at) or 0)
  end
end
local counters = redis.call('HMGET', K_COUNTERS, 'processed', 'failed')
local limits = redis.call('HMGET', K_LIMITS, 'concurrency', 'rate', 'window')
return {
  redis.call('LLEN', K_PENDING), redis.call('ZCARD', K_SCHEDULED), redis.call('ZCARD', K_ACTIVE),
  redis.call('ZCARD', K_DEAD), redis.call('ZCARD', K_BLOCKED),
  counters[1], counters[2], redis.call('EXISTS', K_PAUSED), limits[1], limits[2], limits[3], ready,
}
