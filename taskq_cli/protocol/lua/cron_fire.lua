-- cron_fire.lua: fire one tick of a periodic schedule exactly once. The claim (the last tick fired,
-- kept in this queue's slot) and the enqueue happen in one script, so any number of schedulers, a
-- restarted one, or one whose clock is off can never fire a tick twice, and a crash cannot claim a
-- tick without enqueueing it.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV[1] now (ms, '' = Redis TIME)   ARGV[2] schedule name   ARGV[3] tick (ms)
-- ARGV[4..9] the task, as one enqueue group: id, metadata JSON, payload JSON, delay_ms or '',
--            at_ms or '', custom ('1': the id is derived from the schedule name and the tick)
-- Returns {'skip'} when this tick (or a later one) was already fired, else {'fired', state, duplicate}.
local now = now_ms(ARGV[1])
local name, tick = ARGV[2], tonumber(ARGV[3])
local last = redis.call('HGET', K_CRON, name)
if last then
  local fired = tonumber(string.match(last, '^(%d+)'))
  if fired and fired >= tick then return {'skip'} end
end
redis.call('HSET', K_CRON, name, ARGV[3] .. ':' .. ARGV[4])
local state, duplicate = enqueue_one(now, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
if state == 'pending' and duplicate == 0 then wake() end
return {'fired', state, duplicate}
