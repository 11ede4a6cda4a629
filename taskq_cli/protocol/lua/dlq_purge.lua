-- dlq_purge.lua: delete dead tasks for good.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1..] ids
-- Returns, per id in order: 1 when deleted, 0 when it was not in the dead set.
local out = {}
for i = 1, #ARGV do
  if redis.call('ZSCORE', K_DEAD, ARGV[i]) then
    forget_unlocking(ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
