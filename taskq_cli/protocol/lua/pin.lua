-- pin.lua: record the handler's own retry options on a running task whose producer did not know them,
-- so that recovery after a crash follows the handler's policy.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] id   ARGV[2] lease token   ARGV[3] max_retries   ARGV[4] backoff_base   ARGV[5] backoff_max
-- Returns 1 when recorded, 0 when the lease was lost.
local id, token = ARGV[1], ARGV[2]
if not holds_lease(id, token) then return 0 end
local meta = load(id)
if meta == nil then return 0 end
meta.max_retries = tonumber(ARGV[3])
meta.backoff_base = tonumber(ARGV[4])
meta.backoff_max = tonumber(ARGV[5])
save(id, meta)
return 1
