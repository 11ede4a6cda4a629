-- enqueue.lua: add tasks to one queue atomically; a custom id already waiting or running is not added
-- twice (idempotent enqueue).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)
-- ARGV[2] n, then n groups of 8:
--   id, metadata JSON (name, queue, options), payload JSON, delay_ms or '', at_ms or '',
--   custom ('1' when the caller chose the id), unique ('' or "<until>|<for ms>|<debounce ms>|<key>"),
--   dependencies ('' or "<queue> <id>" refs joined by newlines: the task is `waiting`; the producer
--   then links it to them, see protocol/dependencies.py)
-- Returns a flat array: id (the holder's for a held unique key), state, duplicate (0|1) for each
-- task, in order.
local now = now_ms(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
local woken = false
-- Plain tasks (generated id, no unique key, no dependencies, due now) are written in bulk: one
-- LPUSH and two HSETs per FLUSH_AT of them instead of three calls each; what enqueue_one writes
-- for them is the same. Any other task first flushes them (it may read what they write).
local FLUSH_AT = 1000
local ids, records, payloads = {}, {}, {}
local function flush()
  if #ids == 0 then return end
  redis.call('LPUSH', K_PENDING, unpack(ids))
  redis.call('HSET', K_TASKS, unpack(records))
  redis.call('HSET', K_PAYLOADS, unpack(payloads))
  ids, records, payloads = {}, {}, {}
end
for i = 0, n - 1 do
  local b = 3 + i * 8
  local id = ARGV[b]
  if ARGV[b + 3] == '' and ARGV[b + 4] == '' and ARGV[b + 5] ~= '1' and ARGV[b + 6] == ''
    and ARGV[b + 7] == '' then
    ids[#ids + 1] = id
    records[#records + 1] = id
    records[#records + 1] = new_record(now, id, ARGV[b + 1], 'pending', '')
    payloads[#payloads + 1] = id
    payloads[#payloads + 1] = ARGV[b + 2]
    if #ids == FLUSH_AT then flush() end
    woken = true
    out[#out + 1] = id
    out[#out + 1] = 'pending'
    out[#out + 1] = 0
  else
    flush()
    local state, duplicate, answered = enqueue_one(now, id, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
      ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7])
    if state == 'pending' and duplicate == 0 then woken = true end
    out[#out + 1] = answered
    out[#out + 1] = state
    out[#out + 1] = duplicate
  end
end
flush()
if woken then wake() end
return out
