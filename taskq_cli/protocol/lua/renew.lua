-- renew.lua: extend the leases of a worker's running attempts (its heartbeat), and record on an
-- attempt the retry policy of a handler its producer did not know, so that recovery after a crash
-- follows it (the renewal is the round trip the worker sends anyway; until it arrives, recovery
-- follows what the record holds, else the defaults).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] lease_ms
-- then triplets: id, lease token, policy ('' or "max_retries backoff_base backoff_max", seconds)
-- Returns the ids whose lease is no longer this worker's (recovered or finished elsewhere).
local now = now_ms(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 3 do
  local id, token, policy = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if holds_lease(id, token) then
    redis.call('ZADD', K_ACTIVE, 'XX', deadline, id)
    if policy ~= '' then
      local meta = load(id)
      local retries, base, max = string.match(policy, '^(%S+) (%S+) (%S+)$')
      if meta and retries then
        meta.max_retries, meta.backoff_base, meta.backoff_max = tonumber(retries), tonumber(base), tonumber(max)
        save(id, meta)
      end
    end
  else
    lost[#lost + 1] = id
  end
end
return lost
