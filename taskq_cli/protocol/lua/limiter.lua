-- limiter.lua: one per-key limiter (TaskQueue.limiter): take a pass, give a permit back, or renew
-- permits. Limiter keys are namespace-wide, not a queue's: this script's KEYS are the limiter's own
-- two keys, which share the limiter's hash tag (the queue-key names of _lib.lua are unused here).
-- KEYS[1] starts   zset  pass id -> time (ms) it passed: the rate's sliding log
-- KEYS[2] permits  zset  pass id -> expiry (ms) of a concurrency permit; renewed while its holder
--                        lives, so a permit of a dead worker expires like its lease
-- ARGV[1] op: 'acquire' | 'release' | 'renew'   ARGV[2] now (ms, '' = Redis TIME)
-- acquire: ARGV[3] pass id, ARGV[4] rate ('' none), ARGV[5] window ms, ARGV[6] concurrency ('' none),
--          ARGV[7] permit ttl ms. Returns {1} when it passes, else {0, ms until it may pass}.
-- release: ARGV[3] pass id. Returns {1}.
-- renew:   ARGV[3] permit ttl ms, ARGV[4..] pass ids. Returns {number of permits still held}.
local L_STARTS, L_PERMITS = KEYS[1], KEYS[2]
local op, now = ARGV[1], now_ms(ARGV[2])
if op == 'release' then
  redis.call('ZREM', L_PERMITS, ARGV[3])
  return {1}
end
if op == 'renew' then
  local ttl, held = tonumber(ARGV[3]), 0
  for i = 4, #ARGV do
    held = held + redis.call('ZADD', L_PERMITS, 'XX', 'CH', now + ttl, ARGV[i])
  end
  redis.call('PEXPIRE', L_PERMITS, ttl)
  return {held}
end
local pass, rate, window, concurrency, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local wait = 0
if concurrency ~= '' then
  redis.call('ZREMRANGEBYSCORE', L_PERMITS, '-inf', now) -- permits whose holder stopped renewing
  if redis.call('ZCARD', L_PERMITS) >= tonumber(concurrency) then
    local first = redis.call('ZRANGE', L_PERMITS, 0, 0, 'WITHSCORES')
    wait = math.min(1000, tonumber(first[2]) - now) -- a holder may finish any time: look again soon
  end
end
if rate ~= '' then
  redis.call('ZREMRANGEBYSCORE', L_STARTS, '-inf', now - window)
  if redis.call('ZCARD', L_STARTS) >= tonumber(rate) then
    local oldest = redis.call('ZRANGE', L_STARTS, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return {0, math.max(wait, 1)} end
if rate ~= '' then
  redis.call('ZADD', L_STARTS, now, pass)
  redis.call('PEXPIRE', L_STARTS, window)
end
if concurrency ~= '' then
  redis.call('ZADD', L_PERMITS, now + ttl, pass)
  redis.call('PEXPIRE', L_PERMITS, ttl)
end
return {1}
