-- depend_link.lua: record waiting tasks as dependents of tasks of this queue (their dependencies), or
-- say that a dependency has already ended. Runs in the dependency's queue; the dependent may be in
-- another (another slot on a Cluster). Idempotent: linking twice adds nothing.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV: groups of 2: dependency id, dependent ref ("<queue> <id>")
-- Returns one answer per group: 'linked' (it will be told through the outbox when the dependency
-- ends), 'done', 'dead' (the dependency has ended so) or 'gone' (no such task: cancelled, cleared or
-- expired).
local out = {}
for i = 1, #ARGV, 2 do
  local id, ref = ARGV[i], ARGV[i + 1]
  local meta, raw = load(id)
  if meta == nil then
    out[#out + 1] = raw and 'dead' or 'gone'
  elseif meta.state == 'done' or meta.state == 'dead' then
    out[#out + 1] = meta.state
  else
    redis.call('SADD', K_TASK_PREFIX .. 'dependents:' .. id, ref)
    out[#out + 1] = 'linked'
  end
end
return out
