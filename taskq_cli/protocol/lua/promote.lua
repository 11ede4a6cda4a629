-- promote.lua: move due scheduled tasks (delays, retries) to pending, in bounded batches, and drop
-- expired done records. Safe to run from any number of schedulers and workers at once.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] batch limit   ARGV[3] dead_max   ARGV[4] dead_ttl_ms
-- Returns {moved, due time of the next scheduled task in ms or -1, now in ms, 1 when the queue has
-- dependency work for maintenance (an outbox entry, an unlinked waiting task) else 0}.
local now = now_ms(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(due) do
  redis.call('ZREM', K_SCHEDULED, id)
  local meta, raw = load(id)
  if meta == nil then
    to_dead(id, {id = id, name = '<malformed>', raw = raw or id, attempts = 0,
      last_error = error_table('MalformedMessage', 'scheduled task record is missing or not JSON')},
      now, tonumber(ARGV[3]), tonumber(ARGV[4]))
  else
    meta.state = 'pending'
    save(id, meta)
    redis.call('LPUSH', K_PENDING, id)
    moved = moved + 1
  end
end
if moved > 0 then wake() end
sweep_done(now, 100)
local nxt = redis.call('ZRANGE', K_SCHEDULED, 0, 0, 'WITHSCORES')
local work = redis.call('EXISTS', K_OUTBOX, K_UNLINKED) > 0 and 1 or 0
if #nxt == 0 then return {moved, -1, now, work} end
return {moved, tonumber(nxt[2]), now, work}
