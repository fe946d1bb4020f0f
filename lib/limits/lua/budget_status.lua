-- budget_status.lua: read-only view of one budget period (for admin pages); writes nothing.
--
-- KEYS[1] budget HASH {spent, held}, KEYS[2] holds ZSET "<request_id>|<micros>" -> lapse ms
-- ARGV[1] now_ms ('' = Redis TIME)
-- Returns {spent, reserved (live holds only), live_hold_count, now_ms}

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. string.format('%d', now), '+inf')
local reserved = 0
for _, m in ipairs(live) do reserved = reserved + (tonumber(string.match(m, '|(%-?%d+)$')) or 0) end
return {spent, reserved, #live, now}
