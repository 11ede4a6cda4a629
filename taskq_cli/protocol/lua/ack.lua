-- ack.lua: an attempt succeeded. The task becomes done; its record and result expire after result_ttl.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] id   ARGV[3] lease token
-- ARGV[4] result JSON or ''           ARGV[5] result_ttl_ms (0 = forget at once)
-- Returns 1 when done (also for a repeated ack of the same attempt), 0 when the lease was lost.
local now = now_ms(ARGV[1])
local id, token = ARGV[2], ARGV[3]
local meta = load(id)
if not holds_lease(id, token) then
  if meta and meta.state == 'done' and meta.lease == token then return 1 end
  return 0
end
release(id)
count_execution(false)
local ttl = tonumber(ARGV[5])
if ttl <= 0 or meta == nil then
  forget(id)
else
  meta.state = 'done'
  meta.finished_at = now
  save(id, meta)
  if ARGV[4] ~= '' then redis.call('HSET', K_RESULTS, id, ARGV[4]) end
  redis.call('ZADD', K_DONE, now + ttl, id)
end
sweep_done(now, 4)
return 1
