-- fetch.lua: reliable fetch of up to n tasks in one call. Each pending task popped goes into `active`
-- under its own fresh lease (one token per wanted task), counting the attempt. A pending entry with no
-- readable record is buried as a malformed message.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] lease_ms   ARGV[3] worker id   ARGV[4] queue name
-- ARGV[5] dead_max                    ARGV[6] dead_ttl_ms
-- ARGV[7..] one lease token per wanted task (a malformed entry is buried as 'malformed-<token>')
-- Returns a flat array, 4 items per task taken, in order of the tokens used:
-- 'task', id, metadata JSON, payload JSON | 'malformed', dead id, '', ''. Empty when nothing is
-- pending or the queue is paused. When the queue's limits (KEYS[15]) held tasks back that are
-- pending, a last group 'limited', ms until the rate allows another start ('' = a concurrency
-- slot must free first: its release wakes the queue), '', ''. Limited tasks stay pending and use no
-- attempt; each start is logged in KEYS[16] for the rate's sliding window.
local now = now_ms(ARGV[1])
local lease_ms, worker, queue = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local dead_max, dead_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('EXISTS', K_PAUSED) == 1 then return {} end

local function bury_malformed(entry, raw, token)
  local dead_id, reason = entry, 'task record is not valid JSON'
  if raw == nil then
    dead_id, reason = 'malformed-' .. token, 'pending entry is not a known task id'
  end
  local meta = {
    id = dead_id, name = '<malformed>', queue = queue, attempts = 0, enqueued_at = now,
    raw = raw or entry, last_error = error_table('MalformedMessage', reason),
  }
  to_dead(dead_id, meta, now, dead_max, dead_ttl)
  return dead_id
end

-- The next pending task under this token's lease: 'task', id, meta JSON, payload; or 'malformed', dead
-- id; or nil when nothing is pending. Bounded: entries of tasks that are no longer pending (cancelled,
-- replaced) are dropped on the way.
local function take(token)
  for _ = 1, 100 do
    local id = redis.call('RPOP', K_PENDING)
    if not id then return nil end
    local meta, raw = load(id)
    if meta == nil then return 'malformed', bury_malformed(id, raw, token), '', '' end
    if meta.state == 'pending' then
      meta.state = 'active'
      meta.attempts = (meta.attempts or 0) + 1
      meta.started_at = now
      meta.worker = worker
      meta.lease = token
      if meta.unique_until == 'started' then unlock(id, meta) end
      local encoded = cjson.encode(meta)
      redis.call('HSET', K_TASKS, id, encoded)
      redis.call('ZADD', K_ACTIVE, now + lease_ms, id)
      redis.call('HSET', K_LEASES, id, token)
      return 'task', id, encoded, redis.call('HGET', K_PAYLOADS, id) or ''
    end
  end
  return nil
end

-- How many starts the limits allow now (of `wanted`), and whether the rate is what holds them back.
local function allowance(wanted, concurrency, rate, window)
  local allowed, by_rate = wanted, false
  if concurrency then
    allowed = math.min(allowed, tonumber(concurrency) - redis.call('ZCARD', K_ACTIVE))
  end
  if rate then
    redis.call('ZREMRANGEBYSCORE', K_STARTS, '-inf', now - tonumber(window))
    local room = tonumber(rate) - redis.call('ZCARD', K_STARTS)
    if room < allowed then allowed, by_rate = room, true end
  end
  return math.max(allowed, 0), by_rate
end

local wanted = #ARGV - 6
local allowed, by_rate = wanted, false
local limits = redis.call('HMGET', K_LIMITS, 'concurrency', 'rate', 'window') -- one call when none
local window = limits[2] and limits[3]
if limits[1] or limits[2] then
  allowed, by_rate = allowance(wanted, limits[1], limits[2], limits[3])
end
local out = {}
for i = 7, 6 + allowed do
  local kind, id, meta_json, payload = take(ARGV[i])
  if kind == nil then return out end
  if kind == 'task' and window then -- trimmed at each fetch, so it never holds more than `rate`
    redis.call('ZADD', K_STARTS, now, ARGV[i])
  end
  out[#out + 1] = kind; out[#out + 1] = id; out[#out + 1] = meta_json; out[#out + 1] = payload
end
if redis.call('LLEN', K_PENDING) > 0 then
  if allowed < wanted then
    local wait_ms = ''
    if by_rate then -- the oldest start in the window leaves it first
      local oldest = redis.call('ZRANGE', K_STARTS, 0, 0, 'WITHSCORES')
      wait_ms = 1
      if #oldest > 0 then wait_ms = math.max(tonumber(oldest[2]) + tonumber(window) - now, 1) end
    end
    out[#out + 1] = 'limited'; out[#out + 1] = wait_ms; out[#out + 1] = ''; out[#out + 1] = ''
  else
    wake() -- chain: let the next idle worker in
  end
end
return out
