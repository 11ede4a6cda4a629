-- dlq_retry.lua: dead tasks back to pending, attempts reset (their last error stays for reference).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2..] ids
-- Returns, per id in order: 'ok', 'missing' (not in the dead set) or 'malformed' (raw text: refused).
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
    save(id, meta)
    redis.call('DEL', K_TASK_PREFIX .. 'outcome:' .. id) -- the marker of its death wakes no one now
    redis.call('LPUSH', K_PENDING, id)
    woken = true
    out[#out + 1] = 'ok'
  end
end
if woken then wake() end
return out
