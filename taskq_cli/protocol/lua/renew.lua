-- renew.lua: extend the leases of a worker's running attempts (its heartbeat).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] lease_ms   then pairs: id, lease token
-- Returns the ids whose lease is no longer this worker's (recovered or finished elsewhere).
local now = now_ms(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if holds_lease(id, token) then
    redis.call('ZADD', K_ACTIVE, 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
