-- charge.lua: charge a request's cost to a budget period exactly once, for a request served without a hold
-- because Redis did not answer (fail-open), its outcome perhaps replayed from the spool. A reserve that timed
-- out may still have reached Redis and taken a hold: that hold, if there, is dropped first.
-- KEYS[1] budget  HASH  {spent, held} of the period (as in reserve.lua)
-- KEYS[2] charged SET   request ids already charged this way (kept ARGV[3] ms)
-- KEYS[3] holds   ZSET  and KEYS[4] lapsed ZSET, as in reserve.lua
-- ARGV: 1 request_id, 2 micros to charge, 3 keep_ms, 4 budget key lifetime in ms (-1 = leave as it is),
--       5 the micros the timed-out reserve would have held
-- Returns 1 when charged now, 0 when that request was charged before.
local member = ARGV[1] .. '|' .. ARGV[5]
if redis.call('ZREM', KEYS[3], member) == 1 then
  redis.call('HINCRBY', KEYS[1], 'held', -tonumber(ARGV[5]))
end
redis.call('ZREM', KEYS[4], member)
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if tonumber(ARGV[2]) ~= 0 then redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2]) end
if tonumber(ARGV[4]) >= 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
