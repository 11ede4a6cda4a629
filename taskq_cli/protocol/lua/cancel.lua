-- cancel.lua: remove a task that has not finished. A pending or scheduled task is gone at once; an
-- active one loses its lease, so its worker sees the loss at its next renewal and stops it.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] id
-- A waiting task leaves its dependencies' bookkeeping: the drain takes it out of their `dependents`
-- (unlink_waiting). Its dependents (if any) are told through the outbox that it was cancelled (they
-- end dead: DependencyFailed).
-- Returns the state it was in ('pending', 'scheduled', 'waiting', 'active'), 'done' or 'dead' when
-- it had already finished (nothing changed), or '' when there is no such task.
local id = ARGV[1]
local meta, raw = load(id)
if meta == nil then
  if raw == nil then return '' end
  return 'dead'
end
local state = meta.state
if state == 'pending' then
  redis.call('LREM', K_PENDING, 0, id)
elseif state == 'scheduled' then
  redis.call('ZREM', K_SCHEDULED, id)
elseif state == 'active' then
  release(id)
elseif state ~= 'waiting' then -- (forget drops a waiting task's bookkeeping)
  return state
end
local now = now_ms(nil)
unlock(id, meta)
unlink_waiting(id, now)
hand_off(id, 'cancelled', now)
forget(id)
notify(id) -- a caller waiting for it learns it is gone
return state
