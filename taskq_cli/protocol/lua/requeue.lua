-- requeue.lua: a stopping worker gives an unfinished attempt back. The task returns to the head of its
-- queue as pending and the attempt is not counted.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] id   ARGV[2] lease token
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
save(id, meta)
redis.call('RPUSH', K_PENDING, id)
wake()
return 1
