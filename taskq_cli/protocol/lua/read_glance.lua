-- read_glance.lua: everything the dashboard's overview shows of one queue, read in one call.
-- A pipeline of one call per queue replaces eight commands per queue: a thousand queues cost a
-- thousand script calls, not eight thousand commands to pack and parse. Read-only and standalone
-- (a `read_` script: scripts.py does not prepend _lib.lua), so it takes only the keys it reads.
-- KEYS: the queue's tasks, pending, active, scheduled, dead, counters, paused, limits, blocked
--       (protocol/keys.py QueueKeys; all share the queue's hash tag). ARGV: none.
-- Returns {pending, scheduled, active, dead, waiting, processed|false, failed|false, paused (0/1),
--          concurrency|false, rate|false, window ms|false, oldest pending ready since (ms)|false}:
-- the counts of queue_stats, the paused flag, the limits, and when the next pending task became
-- ready (enqueued, due, or back from the dead-letter queue: the latest of the three).
local K_TASKS, K_PENDING, K_ACTIVE, K_SCHEDULED, K_DEAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_COUNTERS, K_PAUSED, K_LIMITS, K_BLOCKED = KEYS[6], KEYS[7], KEYS[8], KEYS[9]

local function load(id)
  local raw = redis.call('HGET', K_TASKS, id)
  if not raw then return nil end
  local ok, meta = pcall(cjson.decode, raw)
  if ok and type(meta) == 'table' then return meta end
  return nil
end

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
