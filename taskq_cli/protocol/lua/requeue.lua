-- requeue.lua: an attempt is given back without counting it. A stopping worker's task returns to
-- the head of its queue as pending; a task a per-key limiter held back (ARGV[3] given) is scheduled
-- for when the limiter lets it pass.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] id   ARGV[2] lease token   ARGV[3] delay_ms ('' or absent: back to the head, pending)
-- ARGV[4] now (ms, '' = Redis TIME)
-- Returns 1 when requeued, 0 when the lease was already lost.
local id, token = ARGV[1], ARGV[2]
if not holds_lease(id, token) then return 0 end
release(id)
local meta = load(id)
if meta == nil then return 0 end
meta.state = 'pending'
meta.attempts = math.max((meta.attempts or 1) - 1, 0)
meta.lease = nil
meta.worker = nil
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  meta.state = 'scheduled'
  meta.run_at = now_ms(ARGV[4]) + tonumber(ARGV[3])
  save(id, meta)
  schedule(id, meta.run_at)
  return 1
end
save(id, meta)
redis.call('RPUSH', K_PENDING, id)
wake()
return 1
