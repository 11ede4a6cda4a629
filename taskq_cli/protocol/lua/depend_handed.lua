-- depend_handed.lua: the dependents of finished tasks of this queue have been told (depend_release ran
-- in their queues): the outbox entries go, and so do the links that were read. A done task's record
-- and result, kept while its dependents waited, now expire after its result_ttl.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME), then per task: id, the outbox value read, n, n dependent refs,
--   m, m refs it was unlinked from (unlink:<id>, see unlink_waiting in _lib.lua)
-- Returns the number of outbox entries removed. An entry written again meanwhile (another value) stays.
local now = now_ms(ARGV[1])
local removed = 0
local i = 2
while i <= #ARGV do
  local id, value, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local key = K_TASK_PREFIX .. 'dependents:' .. id
  for j = i + 3, i + 2 + n, 1000 do -- unpack is bounded by Lua's stack
    redis.call('SREM', key, unpack(ARGV, j, math.min(j + 999, i + 2 + n)))
  end
  local m = tonumber(ARGV[i + 3 + n])
  local unlink = K_TASK_PREFIX .. 'unlink:' .. id
  for j = i + 4 + n, i + 3 + n + m, 1000 do
    redis.call('SREM', unlink, unpack(ARGV, j, math.min(j + 999, i + 3 + n + m)))
  end
  i = i + 4 + n + m
  if redis.call('HGET', K_OUTBOX, id) == value then
    redis.call('HDEL', K_OUTBOX, id)
    removed = removed + 1
    local meta = load(id)
    if meta and meta.state == 'done' and tonumber(redis.call('ZSCORE', K_DONE, id) or 0) >= KEEP_SCORE then
      redis.call('ZADD', K_DONE, now + (meta.result_ttl_ms or 0), id)
    end
  end
end
return removed
