-- depend_release.lua: tell waiting tasks of this queue how one of their dependencies (maybe in another
-- queue) stands. 'done' removes it from what the task waits for (one SREM: O(1) per dependency, however
-- many a chord has); when nothing is left the task becomes pending, or scheduled for its own run time.
-- 'dead', 'cancelled' or 'gone' bury it with DependencyFailed naming the dependency (and its own
-- dependents learn it through this queue's outbox). Idempotent: a task no longer waiting is left alone,
-- and so is a waiting task told of the failure of a task it does not wait for (a stale link).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] dead_max   ARGV[3] dead_ttl_ms
-- ARGV[4] mode: 'drain' (from an outbox) | 'settle' (the producer's links are made: each task named
--   leaves `unlinked`)
-- then groups of 3: dependent id, dependency ref ("<queue> <id>"), outcome ('done', 'dead',
--   'cancelled', 'gone', or 'linked': nothing to remove, the link is confirmed)
-- Returns one answer per group ('released', 'dead', 'waiting', 'skip': not waiting), then 1 when an
-- outbox entry was written here (recursion: this queue's outbox is drained next) else 0.
local now = now_ms(ARGV[1])
local dead_max, dead_ttl, settle = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == 'settle'
local out = {}

local function failed(id, meta, ref, outcome)
  local dep_queue, dep_id = string.match(ref, '^(%S+) (.*)$')
  local message = 'dependency ' .. tostring(dep_id) .. ' (queue ' .. tostring(dep_queue) .. ') '
  if outcome == 'gone' then message = message .. 'no longer exists' else message = message .. 'ended ' .. outcome end
  meta.last_error = error_table('DependencyFailed', message)
  meta.finished_at = now
  redis.call('ZREM', K_BLOCKED, id)
  redis.call('ZREM', K_UNLINKED, id)
  redis.call('DEL', K_TASK_PREFIX .. 'deps:' .. id)
  to_dead(id, meta, now, dead_max, dead_ttl)
end

-- Each task's record is decoded once per call (a chord's callback is named once per dependency).
local metas = {}
local function tell(id, ref, outcome)
  local meta = metas[id]
  if meta == nil then
    meta = load(id) or false
    metas[id] = meta
  end
  if settle then redis.call('ZREM', K_UNLINKED, id) end
  if not meta or meta.state ~= 'waiting' then return 'skip' end
  local deps = K_TASK_PREFIX .. 'deps:' .. id
  if outcome == 'done' then
    redis.call('SREM', deps, ref)
  elseif outcome ~= 'linked' and redis.call('SISMEMBER', deps, ref) == 0 then
    return 'skip' -- not one it waits for (a stale link: another task by that id, or already done)
  elseif outcome ~= 'linked' then
    failed(id, meta, ref, outcome)
    return 'dead'
  end
  if redis.call('EXISTS', K_TASK_PREFIX .. 'deps:' .. id) == 0 then
    release_waiting(id, meta, now)
    return 'released'
  end
  return 'waiting'
end

for i = 5, #ARGV, 3 do
  out[#out + 1] = tell(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
out[#out + 1] = handed and 1 or 0
return out
