-- forget.lua: the second step of forgetting an empty queue (Broker.forget_if_empty). Its name has
-- just left <ns>:queues; when the queue still holds nothing, its wake token goes too and the name
-- stays out. Otherwise (a task came meanwhile) the caller adds the name back: producers add it
-- after writing, so a concurrent enqueue is never left out of the registry.
-- KEYS: the queue's keys (_lib.lua).
-- ARGV: none.
-- Returns 1 when the queue was empty (forgotten), 0 when it holds something.
if not queue_is_empty() then return 0 end
redis.call('DEL', K_WAKE, K_UNIQUE, K_STARTS) -- with no task left, what these hold is stale
return 1
