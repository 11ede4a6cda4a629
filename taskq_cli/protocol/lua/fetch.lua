-- fetch.lua: reliable fetch. Pop the next pending task into `active` under a fresh lease, counting the
-- attempt. A pending entry with no readable record is buried as a malformed message.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] lease_ms     ARGV[3] lease token
-- ARGV[4] worker id                   ARGV[5] queue name   ARGV[6] spare id for a malformed entry
-- ARGV[7] dead_max                    ARGV[8] dead_ttl_ms
-- Returns nil when nothing is pending or the queue is paused, {'task', id, metadata JSON, payload JSON},
-- or {'malformed', dead id}.
local now = now_ms(ARGV[1])
local lease_ms, token, worker = tonumber(ARGV[2]), ARGV[3], ARGV[4]
if redis.call('EXISTS', K_PAUSED) == 1 then return nil end

local function bury_malformed(entry, raw)
  local dead_id, reason = entry, 'task record is not valid JSON'
  if raw == nil then
    dead_id, reason = ARGV[6], 'pending entry is not a known task id'
  end
  local meta = {
    id = dead_id, name = '<malformed>', queue = ARGV[5], attempts = 0, enqueued_at = now,
    raw = raw or entry, last_error = error_table('MalformedMessage', reason),
  }
  to_dead(dead_id, meta, now, tonumber(ARGV[7]), tonumber(ARGV[8]))
  return {'malformed', dead_id}
end

-- Bounded: entries of tasks that are no longer pending (cancelled, replaced) are dropped on the way.
for _ = 1, 100 do
  local id = redis.call('RPOP', K_PENDING)
  if not id then return nil end
  local meta, raw = load(id)
  if meta == nil then return bury_malformed(id, raw) end
  if meta.state == 'pending' then
    meta.state = 'active'
    meta.attempts = (meta.attempts or 0) + 1
    meta.started_at = now
    meta.worker = worker
    meta.lease = token
    save(id, meta)
    redis.call('ZADD', K_ACTIVE, now + lease_ms, id)
    redis.call('HSET', K_LEASES, id, token)
    if redis.call('LLEN', K_PENDING) > 0 then wake() end -- chain: let the next idle worker in
    return {'task', id, cjson.encode(meta), redis.call('HGET', K_PAYLOADS, id) or ''}
  end
end
return nil
