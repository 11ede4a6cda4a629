-- depend_read.lua: what the outbox holds (read only): finished tasks of this queue whose dependents
-- are still to be told, with those dependents.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] at most this many entries   ARGV[2..] only these ids (none: any entries)
-- Returns a flat array per entry: id, outbox value ("<outcome>|<ms>"), n, then n dependent refs, m,
-- then m refs of the dependencies a cancelled waiting task is to be unlinked from (unlink:<id>).
local limit = tonumber(ARGV[1])
local entries = {}
if #ARGV > 1 then
  for i = 2, #ARGV do
    local value = redis.call('HGET', K_OUTBOX, ARGV[i])
    if value then entries[#entries + 1] = {ARGV[i], value} end
  end
else
  local scan = redis.call('HSCAN', K_OUTBOX, '0', 'COUNT', limit)
  local flat = scan[2]
  for i = 1, #flat, 2 do entries[#entries + 1] = {flat[i], flat[i + 1]} end
end
local out = {}
for n, entry in ipairs(entries) do
  if n > limit then break end
  local refs = redis.call('SMEMBERS', K_TASK_PREFIX .. 'dependents:' .. entry[1])
  out[#out + 1] = entry[1]
  out[#out + 1] = entry[2]
  out[#out + 1] = #refs
  for _, ref in ipairs(refs) do out[#out + 1] = ref end
  local parents = redis.call('SMEMBERS', K_TASK_PREFIX .. 'unlink:' .. entry[1])
  out[#out + 1] = #parents
  for _, ref in ipairs(parents) do out[#out + 1] = ref end
end
return out
