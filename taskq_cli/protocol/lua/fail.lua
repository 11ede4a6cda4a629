-- fail.lua: an attempt failed. Schedule the next attempt after delay_ms, or bury the task when its
-- attempts are spent or the failure is final (mode 'dead': Fail, invalid payload).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] id   ARGV[3] lease token
-- ARGV[4] error JSON {type, message, traceback}   ARGV[5] mode: 'retry' | 'dead'
-- ARGV[6] delay_ms   ARGV[7] max_retries   ARGV[8] dead_max   ARGV[9] dead_ttl_ms
-- Returns the new state ('scheduled' | 'dead'), or '' when the lease was lost.
local now = now_ms(ARGV[1])
local id, token = ARGV[2], ARGV[3]
local meta = load(id)
if not holds_lease(id, token) then
  if meta and meta.lease == token and (meta.state == 'scheduled' or meta.state == 'dead') then
    return meta.state -- a repeated report of the same attempt
  end
  return ''
end
release(id)
count_execution(true)
if meta == nil then
  forget(id)
  return 'dead'
end
meta.last_error = cjson.decode(ARGV[4])
meta.finished_at = now
if ARGV[5] == 'dead' then
  to_dead(id, meta, now, tonumber(ARGV[8]), tonumber(ARGV[9]))
  return 'dead'
end
return retry_or_bury(id, meta, now, tonumber(ARGV[6]), tonumber(ARGV[7]),
  tonumber(ARGV[8]), tonumber(ARGV[9]))
