-- ack.lua: attempts of one queue succeeded. Each task becomes done; its record and result expire after
-- result_ttl.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME), then one group of 4 per attempt:
--   id, lease token, result JSON or '', result_ttl_ms (0 = forget at once)
-- Returns one integer per attempt: 1 when done (also for a repeated ack of the same attempt), 2 when
-- done and its outcome went to the outbox for its dependents (hand_off: the worker drains it at once;
-- the record and result are kept until they are told, then expire after result_ttl), 0 when the
-- lease was lost.
local now = now_ms(ARGV[1])

-- Returns the answer for this attempt and 1 when it released a lease, else 0.
local function ack(id, token, result, ttl)
  local meta = load(id)
  if not holds_lease(id, token) then
    if meta and meta.state == 'done' and meta.lease == token then return 1, 0 end
    return 0, 0
  end
  release(id)
  unlock(id, meta) -- the same script that ends the task ends its unique hold
  count_execution(false)
  handed = false
  hand_off(id, 'done', now)
  if ttl <= 0 or meta == nil then
    forget(id)
  else
    meta.state = 'done'
    meta.finished_at = now
    local expires = now + ttl
    if handed then meta.result_ttl_ms, expires = ttl, KEEP_SCORE end -- depend_handed sets it
    save(id, meta)
    if result ~= '' then redis.call('HSET', K_RESULTS, id, result) end
    redis.call('ZADD', K_DONE, expires, id)
  end
  notify(id) -- a caller waiting in result() reads the record now
  return handed and 2 or 1, 1
end

local out, released = {}, 0
for b = 2, #ARGV, 4 do
  local answer, freed = ack(ARGV[b], ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]))
  out[#out + 1] = answer
  released = released + freed
end
if released > 0 then sweep_done(now, math.min(4 * released, 100)) end -- the work paid for by this call
return out
