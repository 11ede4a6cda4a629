-- recover.lua: the stalled-attempt checker. Attempts whose lease expired (their worker died or lost
-- Redis) count as failed: retried after the backoff, or buried when attempts are spent.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] batch limit   ARGV[3] jitter seed in [0, 1)
-- ARGV[4] default max_retries   ARGV[5] default backoff_base (s)   ARGV[6] default backoff_max (s)
-- ARGV[7] dead_max   ARGV[8] dead_ttl_ms
-- Returns {retried, buried, 1 when the queue is empty afterwards (queue_is_empty) else 0}.
local now = now_ms(ARGV[1])
local seed = tonumber(ARGV[3])
local dead_max, dead_ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local retried, buried = 0, 0
local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for i, id in ipairs(expired) do
  release(id)
  count_execution(true)
  local meta, raw = load(id)
  if meta == nil then
    meta = {id = id, name = '<malformed>', raw = raw or '', attempts = 0}
  end
  meta.last_error = error_table('WorkerLost',
    'worker ' .. tostring(meta.worker or '?') .. ' lost: its lease expired during attempt '
    .. tostring(meta.attempts or 0))
  meta.lease = nil
  meta.finished_at = now
  local u = (seed + i * 0.6180339887498949) % 1 -- a well spread jitter per task from one seed
  local delay = backoff_ms(meta.attempts or 1, (meta.backoff_base or tonumber(ARGV[5])) * 1000,
    (meta.backoff_max or tonumber(ARGV[6])) * 1000, u)
  local max_retries = meta.max_retries or tonumber(ARGV[4])
  if meta.name == '<malformed>' then max_retries = -1 end
  if retry_or_bury(id, meta, now, delay, max_retries, dead_max, dead_ttl) == 'dead' then
    buried = buried + 1
  else
    retried = retried + 1
  end
end
return {retried, buried, queue_is_empty() and 1 or 0}
