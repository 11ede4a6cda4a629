-- clear.lua: delete up to `limit` pending, scheduled, waiting (for dependencies), dead and done tasks
-- of a queue; running tasks are left to finish. Dependents of the cleared tasks learn it through the
-- outbox (as for a cancel). Called repeatedly until nothing remains, so Redis never blocks on a large queue.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] limit per structure
-- Returns {deleted, still to delete}.
local limit = tonumber(ARGV[1])
local deleted = 0
local ids = redis.call('LRANGE', K_PENDING, -limit, -1)
if #ids > 0 then
  redis.call('LTRIM', K_PENDING, 0, -#ids - 1)
  for _, id in ipairs(ids) do forget_unlocking(id) end
  deleted = deleted + #ids
end
for _, set in ipairs({K_SCHEDULED, K_BLOCKED, K_DEAD, K_DONE}) do
  ids = redis.call('ZRANGE', set, 0, limit - 1)
  for _, id in ipairs(ids) do
    redis.call('ZREM', set, id)
    forget_unlocking(id)
  end
  deleted = deleted + #ids
end
local left = redis.call('LLEN', K_PENDING) + redis.call('ZCARD', K_SCHEDULED) + redis.call('ZCARD', K_BLOCKED)
  + redis.call('ZCARD', K_DEAD) + redis.call('ZCARD', K_DONE)
return {deleted, left}
