-- dlq_retry.lua: dead tasks back to pending, attempts reset (their last error stays for reference).
-- A task with dependencies (its `after:<id>` list) waits again for all of them: `waiting`, its links
-- to be confirmed by the caller (protocol/dependencies.py), which releases it at once from those
-- already done. A death whose hand-off is still in the outbox is withdrawn: its dependents go on
-- waiting for it.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2..] ids
-- Returns, per id in order: 'ok', 'waiting' (for its dependencies), 'missing' (not in the dead set)
-- or 'malformed' (raw text: refused).
local now = now_ms(ARGV[1])
local out = {}
local woken = false
for i = 2, #ARGV do
  local id = ARGV[i]
  local meta, raw = nil, nil
  if redis.call('ZSCORE', K_DEAD, id) then meta, raw = load(id) end
  if meta == nil and raw == nil then
    out[#out + 1] = 'missing'
  elseif meta == nil or meta.name == '<malformed>' then
    out[#out + 1] = 'malformed'
  else
    redis.call('ZREM', K_DEAD, id)
    meta.state = 'pending'
    meta.attempts = 0
    meta.retried_at = now
    meta.died_at, meta.run_at, meta.finished_at, meta.lease, meta.worker = nil, nil, nil, nil, nil
    redis.call('DEL', K_TASK_PREFIX .. 'outcome:' .. id) -- the marker of its death wakes no one now
    -- Its death not handed off yet: withdrawn. Its dependents stay linked, waiting for how it ends
    -- now (a drain that read the entry before this script is telling them already: they end dead).
    redis.call('HDEL', K_OUTBOX, id)
    local refs = redis.call('LRANGE', K_TASK_PREFIX .. 'after:' .. id, 0, -1)
    if #refs > 0 then
      meta.state = 'waiting'
      save(id, meta)
      wait_for(id, refs, now, false)
      out[#out + 1] = 'waiting'
    else
      save(id, meta)
      redis.call('LPUSH', K_PENDING, id)
      woken = true
      out[#out + 1] = 'ok'
    end
  end
end
if woken then wake() end
return out
