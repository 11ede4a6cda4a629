-- enqueue.lua: add tasks to one queue atomically; a custom id already waiting or running is not added
-- twice (idempotent enqueue).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)
-- ARGV[2] n, then n groups of 6:
--   id, metadata JSON (name, queue, options), payload JSON, delay_ms or '', at_ms or '',
--   custom ('1' when the caller chose the id)
-- Returns a flat array: id, state, duplicate (0|1) for each task, in order.
local now = now_ms(ARGV[1])
local n = tonumber(ARGV[2])
local out = {}
local woken = false
for i = 0, n - 1 do
  local b = 3 + i * 6
  local id, meta_json, payload = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local delay, at, custom = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local existing_state = nil
  if custom == '1' then
    local old, raw = load(id)
    if old and (old.state == 'pending' or old.state == 'scheduled' or old.state == 'active') then
      existing_state = old.state
    elseif raw then
      forget(id) -- a done or dead task (or a corrupt record) with this id is replaced
    end
  end
  if existing_state then
    out[#out + 1] = id
    out[#out + 1] = existing_state
    out[#out + 1] = 1
  else
    local meta = cjson.decode(meta_json)
    meta.id = id
    meta.attempts = 0
    meta.enqueued_at = now
    local run_at = now
    if delay ~= '' then run_at = now + tonumber(delay) elseif at ~= '' then run_at = tonumber(at) end
    if run_at > now then
      meta.state = 'scheduled'
      meta.run_at = run_at
      schedule(id, run_at)
    else
      meta.state = 'pending'
      redis.call('LPUSH', K_PENDING, id)
      woken = true
    end
    save(id, meta)
    redis.call('HSET', K_PAYLOADS, id, payload)
    out[#out + 1] = id
    out[#out + 1] = meta.state
    out[#out + 1] = 0
  end
end
if woken then wake() end
return out
