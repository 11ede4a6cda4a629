-- depend_unlink.lua: take cancelled (or cleared) waiting tasks out of the dependents of tasks of this
-- queue (their dependencies): a dependency's hand-off never names them, and the sets stay bounded.
-- Runs in the dependency's queue; the cancelled task may be in another (another slot on a Cluster).
-- Idempotent: unlinking twice removes nothing more.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV: groups of 2: dependency id, ref ("<queue> <id>") of the cancelled dependent
-- Returns the number of links removed.
local removed = 0
for i = 1, #ARGV, 2 do
  removed = removed + redis.call('SREM', K_TASK_PREFIX .. 'dependents:' .. ARGV[i], ARGV[i + 1])
end
return removed
