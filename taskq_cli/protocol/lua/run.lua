-- run.lua: run a waiting task now (`taskq task run`): a scheduled one (delayed, or waiting for its
-- retry) moves from `scheduled` to the end of `pending` at once, as its promotion would when due, and
-- a worker is woken. Its attempts stay as they are. Any other state is left alone.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] id
-- Returns the state it was in: 'scheduled' (moved), 'pending', 'active', 'done' or 'dead' (nothing
-- changed), or '' when there is no such task.
local now = now_ms(ARGV[1])
local id = ARGV[2]
local meta, raw = load(id)
if meta == nil then
  if raw == nil then return '' end
  return 'dead'
end
if meta.state ~= 'scheduled' or redis.call('ZREM', K_SCHEDULED, id) == 0 then
  return meta.state
end
meta.state = 'pending'
meta.run_at = now
save(id, meta)
redis.call('LPUSH', K_PENDING, id)
wake()
return 'scheduled'
