-- _lib.lua: helpers prepended to every taskq script (scripts.py joins them before loading).
--
-- KEYS, the same for every script: one queue's keys, all sharing the queue's hash tag
-- (order fixed by protocol/keys.py QUEUE_KEY_ORDER).
--   KEYS[1] tasks      hash  id -> metadata JSON
--   KEYS[2] payloads   hash  id -> payload JSON text
--   KEYS[3] results    hash  id -> result JSON text
--   KEYS[4] pending    list  ids; LPUSH to enqueue, RPOP to fetch
--   KEYS[5] active     zset  id -> lease deadline (ms)
--   KEYS[6] leases     hash  id -> lease token of the current attempt
--   KEYS[7] scheduled  zset  id -> due time (ms)
--   KEYS[8] dead       zset  id -> time of death (ms)
--   KEYS[9] done       zset  id -> expiry of the done record (ms)
--   KEYS[10] counters  hash  processed, failed
--   KEYS[11] wake      list  at most one wake-up token for idle workers ('1' or 'due': see wake)
--   KEYS[12] paused    string present while the queue is paused
--   KEYS[13] cron      hash  schedule name -> "<tick ms>:<task id>" last fired into this queue
--   KEYS[14] unique    hash  unique key -> id of the task holding it
--   KEYS[15] limits    hash  concurrency, rate, window (ms): the queue's limits
--   KEYS[16] starts    zset  lease token -> start time (ms): the rate limit's sliding log
--   KEYS[17] blocked   zset  id -> enqueue time (ms) of each waiting task (dependencies)
--   KEYS[18] outbox    hash  id -> "<outcome>|<ms>": a finished task whose dependents are not told yet
--   KEYS[19] unlinked  zset  id -> time (ms): a waiting task whose links are not confirmed yet
-- Times are milliseconds on Redis's clock (TIME) unless a test passes `now` explicitly.
-- Per task, spelled here from KEYS[1] (same hash tag, so the same slot; names in protocol/keys.py):
--   <ns>:{q}:waiting:<id>  string present while a caller waits for the task's outcome
--   <ns>:{q}:outcome:<id>  list   one marker, pushed when a waited-for task ends (notify below)
--   <ns>:{q}:deps:<id>       set  "<queue> <id>" of each dependency of a waiting task not done yet
--   <ns>:{q}:dependents:<id> set  "<queue> <id>" of each task waiting on this one
--   <ns>:{q}:unlink:<id>     set  "<queue> <id>" of each dependency a cancelled (or cleared) waiting
--                                 task was still linked to: the drain takes it out of their
--                                 `dependents` (unlink_waiting below), then deletes this set
--   <ns>:{q}:after:<id>      list "<queue> <id>" of each dependency, in order (kept with the record:
--                                 dlq retry, task show, dependency_results; the record holds `deps`,
--                                 their number, so it stays small however many a chord has)

local K_TASKS, K_PAYLOADS, K_RESULTS, K_PENDING = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_ACTIVE, K_LEASES, K_SCHEDULED, K_DEAD = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_DONE, K_COUNTERS, K_WAKE, K_PAUSED, K_CRON = KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local K_TASK_PREFIX = string.sub(K_TASKS, 1, -6) -- '<ns>:{q}:' (K_TASKS ends in 'tasks')
local OUTCOME_TTL_MS = 15000 -- keys.py OUTCOME_TTL_MS
local K_UNIQUE, K_LIMITS, K_STARTS = KEYS[14], KEYS[15], KEYS[16]
local K_BLOCKED, K_OUTBOX, K_UNLINKED = KEYS[17], KEYS[18], KEYS[19]
-- A done record kept for its dependents: its expiry (in K_DONE) is set when they have been told.
local KEEP_SCORE = 9000000000000000

local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Wake one idle worker; the list never holds more than one token. The token is '1' (tasks may be
-- pending: fetch) or 'due' (also: a scheduled task is due sooner than the workers planned, so the
-- one woken runs a promote pass too); 'due' replaces a '1' waiting there, never the other way round.
local function wake(token)
  if redis.call('LLEN', K_WAKE) == 0 then
    redis.call('LPUSH', K_WAKE, token or '1')
  elseif token == 'due' then
    redis.call('LSET', K_WAKE, 0, token)
  end
end

-- Add to the scheduled set; when it is due before everything else there, wake an idle worker so
-- that workers re-plan their next promote pass (they otherwise learn of it within a second).
local function schedule(id, run_at)
  local first = redis.call('ZRANGE', K_SCHEDULED, 0, 0, 'WITHSCORES')
  redis.call('ZADD', K_SCHEDULED, run_at, id)
  if #first == 0 or run_at < tonumber(first[2]) then wake('due') end
end

-- The task's metadata as a table, or nil and the raw text when it is missing or not JSON.
local function load(id)
  local raw = redis.call('HGET', K_TASKS, id)
  if not raw then return nil, nil end
  local ok, meta = pcall(cjson.decode, raw)
  if not ok or type(meta) ~= 'table' then return nil, raw end
  return meta, raw
end

local function save(id, meta)
  redis.call('HSET', K_TASKS, id, cjson.encode(meta))
end

-- Tell the callers waiting for this task's outcome (if any) that it ended: done, dead or gone. One
-- marker in a list; each waiter blocks with BLMOVE from the list to itself, which hands the marker
-- on, so every blocked waiter wakes (a plain pop would wake one) and then reads the record. Nothing
-- is written when nobody waits; the marker expires, so nothing outlives the waits.
local function notify(id)
  if redis.call('EXISTS', K_TASK_PREFIX .. 'waiting:' .. id) == 1 then
    local key = K_TASK_PREFIX .. 'outcome:' .. id
    redis.call('DEL', key)
    redis.call('RPUSH', key, '1')
    redis.call('PEXPIRE', key, OUTCOME_TTL_MS)
  end
end

-- Remove every trace of a task (finished records only: never called on a task in a list). A marker
-- of an earlier task with this id goes too, so it cannot wake waiters of a new one.
local function forget(id)
  redis.call('DEL', K_TASK_PREFIX .. 'outcome:' .. id, K_TASK_PREFIX .. 'deps:' .. id,
    K_TASK_PREFIX .. 'after:' .. id)
  redis.call('ZREM', K_BLOCKED, id)
  redis.call('ZREM', K_UNLINKED, id)
  redis.call('HDEL', K_TASKS, id)
  redis.call('HDEL', K_PAYLOADS, id)
  redis.call('HDEL', K_RESULTS, id)
  redis.call('HDEL', K_LEASES, id)
  redis.call('ZREM', K_DEAD, id)
  redis.call('ZREM', K_DONE, id)
end

-- Whether the queue holds nothing at all (its wake token aside): no task of any state, no counter,
-- not paused, no cron claim, no limits. Such a queue may be forgotten (Broker.forget_if_empty).
local function queue_is_empty()
  return redis.call('EXISTS', K_TASKS, K_PAYLOADS, K_RESULTS, K_PENDING, K_ACTIVE, K_LEASES,
    K_SCHEDULED, K_DEAD, K_DONE, K_COUNTERS, K_PAUSED, K_CRON, K_LIMITS, K_BLOCKED, K_OUTBOX,
    K_UNLINKED) == 0
end

-- Keep the dead set within dead_max entries and dead_ttl ms (bounded work per call).
local function trim_dead(now, dead_max, dead_ttl)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_DEAD, '-inf', now - dead_ttl, 'LIMIT', 0, 100)) do
    forget(id)
  end
  local excess = redis.call('ZCARD', K_DEAD) - dead_max
  if excess > 0 then
    for _, id in ipairs(redis.call('ZRANGE', K_DEAD, 0, math.min(excess, 100) - 1)) do
      forget(id)
    end
  end
end

-- Give up the unique key the task holds, if it still holds it (a later task may hold it now).
local function unlock(id, meta)
  if meta and meta.unique_key and redis.call('HGET', K_UNIQUE, meta.unique_key) == id then
    redis.call('HDEL', K_UNIQUE, meta.unique_key)
  end
end

-- When the task has dependents, write its outcome ('done', 'dead', 'cancelled') to the outbox in the
-- same script that ends it: protocol/dependencies.py tells the dependents (in their own queues, maybe
-- other slots) and then removes the entry, so a crash in between delays the hand-off, never loses
-- it. The first outcome written stays (a cleared done task still releases its dependents).
-- `handed` tells the calling script that an entry was written (the worker drains at once).
local handed = false
local function hand_off(id, outcome, now)
  if redis.call('EXISTS', K_TASK_PREFIX .. 'dependents:' .. id) == 1 then
    redis.call('HSETNX', K_OUTBOX, id, outcome .. '|' .. tostring(now))
    handed = true
  end
end

-- A waiting task about to be forgotten (cancel, clear) is still in the `dependents` sets of the
-- dependencies it waits for, maybe in other queues (other slots): keep what it waits for as
-- `unlink:<id>` and write an outbox entry, so that the drain takes it out of those sets (and tells
-- its own dependents, if any, that it was cancelled). Bounded memory, and a dependency's later
-- hand-off never names it.
local function unlink_waiting(id, now)
  local deps = K_TASK_PREFIX .. 'deps:' .. id
  if redis.call('EXISTS', deps) == 1 then
    local unlink = K_TASK_PREFIX .. 'unlink:' .. id
    redis.call('SUNIONSTORE', unlink, unlink, deps)
    redis.call('HSETNX', K_OUTBOX, id, 'cancelled|' .. tostring(now))
    handed = true
  end
end

-- forget() for a task that may hold a unique key or have dependents (cancel, clear, purge).
local function forget_unlocking(id)
  local now = now_ms(nil)
  unlock(id, (load(id)))
  unlink_waiting(id, now)
  hand_off(id, 'cancelled', now)
  forget(id)
end

local UNFINISHED = {pending = true, scheduled = true, waiting = true, active = true}

-- A custom id taken again (enqueue_one) while the hand-off of its earlier task is still in the
-- outbox: that entry, with the dependents (and the links to undo) it is about, moves aside to the
-- field "<id>\n<n>" (ids are printable, so no id has a newline), and the drain hands it off as
-- before (protocol/dependencies.py reads the id before the newline). The new task's dependents and
-- outcome start afresh under the plain id: the earlier outcome can neither release nor bury them.
-- Returns the field it moved to (nil: nothing was pending).
local function set_aside_hand_off(id)
  local value = redis.call('HGET', K_OUTBOX, id)
  if not value then return nil end
  local n = 1
  while redis.call('HEXISTS', K_OUTBOX, id .. '\n' .. n) == 1 do n = n + 1 end
  local field = id .. '\n' .. n
  for _, kind in ipairs({'dependents:', 'unlink:'}) do
    local key = K_TASK_PREFIX .. kind .. id
    if redis.call('EXISTS', key) == 1 then redis.call('RENAME', key, K_TASK_PREFIX .. kind .. field) end
  end
  redis.call('HSET', K_OUTBOX, field, value)
  redis.call('HDEL', K_OUTBOX, id)
  return field
end

-- The id and record of the task holding a unique key, or nil when nobody holds it: the entry may be
-- stale (a task past its unique_for, finished, replaced or gone), so the holder is checked here.
local function holder_of(key, now)
  local id = redis.call('HGET', K_UNIQUE, key)
  if not id then return nil end
  local meta = load(id)
  if meta and meta.unique_key == key and UNFINISHED[meta.state]
    and (meta.unique_expires == nil or now < meta.unique_expires) then
    return id, meta
  end
  return nil
end

local function to_dead(id, meta, now, dead_max, dead_ttl)
  unlock(id, meta) -- a dead task never blocks its key
  meta.state = 'dead'
  meta.died_at = now
  meta.run_at = nil
  save(id, meta)
  redis.call('ZADD', K_DEAD, now, id)
  trim_dead(now, dead_max, dead_ttl)
  notify(id)
  hand_off(id, 'dead', now) -- its dependents end dead too (DependencyFailed)
end

-- Drop expired done records (bounded work per call).
local function sweep_done(now, limit)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_DONE, '-inf', now, 'LIMIT', 0, limit)) do
    forget(id)
  end
end

local function holds_lease(id, token)
  return redis.call('HGET', K_LEASES, id) == token
end

-- End the current attempt's lease. Under a concurrency limit the freed slot wakes an idle worker
-- (a worker whose fetch was limited waits on the wake key: this is how it learns of the capacity).
-- Asked once per script call: a batch of acks pays for one look, and wakes at most once.
local slot_wake = nil -- nil: not asked yet; true: the queue has a concurrency limit; false: done
local function release(id)
  redis.call('ZREM', K_ACTIVE, id)
  redis.call('HDEL', K_LEASES, id)
  if slot_wake == nil then slot_wake = redis.call('HEXISTS', K_LIMITS, 'concurrency') == 1 end
  if slot_wake and redis.call('LLEN', K_PENDING) > 0 then
    wake()
    slot_wake = false
  end
end

local function count_execution(failed)
  redis.call('HINCRBY', K_COUNTERS, 'processed', 1)
  if failed then redis.call('HINCRBY', K_COUNTERS, 'failed', 1) end
end

-- Schedule another attempt after delay_ms, or bury the task when its attempts are spent.
local function retry_or_bury(id, meta, now, delay_ms, max_retries, dead_max, dead_ttl)
  if (meta.attempts or 0) >= max_retries + 1 then
    to_dead(id, meta, now, dead_max, dead_ttl)
    return 'dead'
  end
  meta.state = 'scheduled'
  meta.run_at = now + delay_ms
  save(id, meta)
  schedule(id, meta.run_at)
  return 'scheduled'
end

-- Uniform in [d/2, d] with d = min(max, base * 2^(attempt-1)); u in [0, 1) comes from the caller.
local function backoff_ms(attempt, base_ms, max_ms, u)
  local d = math.min(max_ms, base_ms * 2 ^ (math.max(attempt, 1) - 1))
  return math.floor(d / 2 + u * d / 2)
end

local function error_table(kind, message)
  return {type = kind, message = message, traceback = ''}
end


-- Debounce: a holder that has not started yet takes the new payload and runs debounce_ms from now.
local function debounce_holder(id, meta, now, payload, debounce_ms)
  if meta.state == 'pending' then redis.call('LREM', K_PENDING, 0, id) end
  meta.state = 'scheduled'
  meta.run_at = now + debounce_ms
  save(id, meta)
  redis.call('ZREM', K_SCHEDULED, id)
  schedule(id, meta.run_at)
  redis.call('HSET', K_PAYLOADS, id, payload)
end

-- A waiting task whose last dependency is done: pending now, or scheduled for its own run time.
local function release_waiting(id, meta, now)
  redis.call('ZREM', K_BLOCKED, id)
  redis.call('ZREM', K_UNLINKED, id)
  redis.call('DEL', K_TASK_PREFIX .. 'deps:' .. id)
  meta.released_at = now
  if meta.run_at and meta.run_at > now then
    meta.state = 'scheduled'
    save(id, meta)
    schedule(id, meta.run_at)
    return 'scheduled'
  end
  meta.state = 'pending'
  meta.run_at = nil
  save(id, meta)
  redis.call('LPUSH', K_PENDING, id)
  wake()
  return 'pending'
end

-- A task (back) to waiting for these dependencies ("<queue> <id>" refs), links to be confirmed;
-- `first`: at enqueue, when the list of its dependencies is written too.
local function wait_for(id, refs, now, first)
  redis.call('ZADD', K_BLOCKED, now, id)
  redis.call('ZADD', K_UNLINKED, now, id)
  local key, list = K_TASK_PREFIX .. 'deps:' .. id, K_TASK_PREFIX .. 'after:' .. id
  if first then redis.call('DEL', list) end
  for i = 1, #refs, 1000 do -- unpack is bounded by Lua's stack: a chord may have thousands
    redis.call('SADD', key, unpack(refs, i, math.min(i + 999, #refs)))
    if first then redis.call('RPUSH', list, unpack(refs, i, math.min(i + 999, #refs))) end
  end
end

-- Add one task (enqueue.lua and cron_fire.lua). A custom id already pending, scheduled, waiting or
-- active is not added twice, nor a task whose unique key an unfinished task holds. Returns the state
-- it is in, 1 when it was such a duplicate (else 0), and the id answered (the holder's, for a unique
-- key). `unique` ('' or nil: none) is "<until>|<for ms>|<debounce ms>|<key>", the numbers possibly
-- empty. `deps` ('' or nil: none): the dependencies' refs joined by newlines; the task is `waiting`
-- (its run time kept for its release). Pending tasks are pushed without waking anyone: the caller
-- wakes once for its whole batch.
-- A new task's record: the producer's compact JSON object joined with the fields set here, as
-- text: no decode and encode per task (JSON keeps the last of repeated keys, so these always win).
local function new_record(now, id, meta_json, state, tail)
  local body = string.sub(meta_json, 2, -2)
  if body ~= '' then body = body .. ',' end
  return '{' .. body .. '"id":' .. cjson.encode(id)
    .. string.format(',"attempts":0,"enqueued_at":%d,"state":"%s"', now, state) .. tail .. '}'
end

local function enqueue_one(now, id, meta_json, payload, delay, at, custom, unique, deps)
  local aside = nil
  if custom == '1' then
    local old, raw = load(id)
    if old and UNFINISHED[old.state] then
      return old.state, 1, id
    elseif raw then
      unlock(id, old)
      forget(id) -- a done or dead task (or a corrupt record) with this id is replaced
    end
    aside = set_aside_hand_off(id)
  end
  local tail = ''
  if unique ~= nil and unique ~= '' then
    local mode, hold_ms, debounce, key = string.match(unique, '^(%a*)|(%d*)|(%d*)|(.*)$')
    local holder, held = holder_of(key, now)
    if holder then
      if debounce ~= '' and (held.state == 'pending' or held.state == 'scheduled')
        and (held.attempts or 0) == 0 then
        debounce_holder(holder, held, now, payload, tonumber(debounce))
        return 'scheduled', 1, holder
      end
      return held.state, 1, holder
    end
    redis.call('HSET', K_UNIQUE, key, id)
    tail = ',"unique_key":' .. cjson.encode(key)
    if mode == 'started' then tail = tail .. ',"unique_until":"started"' end
    if hold_ms ~= '' then tail = tail .. string.format(',"unique_expires":%d', now + tonumber(hold_ms)) end
    if debounce ~= '' then delay, at = debounce, '' end
  end
  local run_at = now
  if delay ~= '' then run_at = now + tonumber(delay) elseif at ~= '' then run_at = tonumber(at) end
  local state = 'pending'
  if deps ~= nil and deps ~= '' then
    state = 'waiting'
    if run_at > now then tail = tail .. string.format(',"run_at":%d', run_at) end
    local refs = {}
    for ref in string.gmatch(deps, '[^\n]+') do refs[#refs + 1] = ref end
    wait_for(id, refs, now, true)
    tail = tail .. string.format(',"deps":%d', #refs)
    if aside then -- a link the earlier task by this id left to undo and that the new one makes again stays
      local unlink = K_TASK_PREFIX .. 'unlink:' .. aside
      redis.call('SDIFFSTORE', unlink, unlink, K_TASK_PREFIX .. 'deps:' .. id)
    end
  elseif run_at > now then
    state, tail = 'scheduled', tail .. string.format(',"run_at":%d', run_at)
    schedule(id, run_at)
  else
    redis.call('LPUSH', K_PENDING, id)
  end
  redis.call('HSET', K_TASKS, id, new_record(now, id, meta_json, state, tail))
  redis.call('HSET', K_PAYLOADS, id, payload)
  return state, 0, id
end
