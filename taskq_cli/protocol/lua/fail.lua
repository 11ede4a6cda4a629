-- fail.lua: an attempt failed. Schedule the next attempt after delay_ms (or, when none is given,
-- after the retry backoff drawn here: backoff_ms in _lib.lua is the one formula), or bury the task
-- when its attempts are spent or the failure is final (mode 'dead': Fail, invalid payload).
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] id   ARGV[3] lease token
-- ARGV[4] error JSON {type, message, traceback}   ARGV[5] mode: 'retry' | 'dead'
-- ARGV[6] delay_ms ('' = the backoff)   ARGV[7] max_retries   ARGV[8] dead_max   ARGV[9] dead_ttl_ms
-- ARGV[10] backoff_base_ms   ARGV[11] backoff_max_ms   ARGV[12] u, uniform in [0, 1) (the jitter)
-- Returns {new state ('scheduled' | 'dead'; '' when the lease was lost), delay_ms when scheduled,
-- 1 when its death went to the outbox for its dependents (hand_off) else 0}.
local now = now_ms(ARGV[1])
local id, token = ARGV[2], ARGV[3]
local meta = load(id)
if not holds_lease(id, token) then
  if meta and meta.lease == token and (meta.state == 'scheduled' or meta.state == 'dead') then
    return {meta.state, 0} -- a repeated report of the same attempt
  end
  return {'', 0}
end
release(id)
count_execution(true)
if meta == nil then
  forget(id)
  notify(id)
  return {'dead', 0}
end
meta.last_error = cjson.decode(ARGV[4])
meta.finished_at = now
if ARGV[5] == 'dead' then
  to_dead(id, meta, now, tonumber(ARGV[8]), tonumber(ARGV[9]))
  return {'dead', 0, handed and 1 or 0}
end
local delay = tonumber(ARGV[6])
if delay == nil then
  delay = backoff_ms(meta.attempts or 1, tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]))
end
local state = retry_or_bury(id, meta, now, delay, tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]))
return {state, state == 'scheduled' and delay or 0, handed and 1 or 0}
