-- settle.lua: replace a reservation with what the request really used (also used to release one).
--
-- KEYS: the same five keys as reserve.lua (log, tok, budget, holds, lapsed), all with one hash tag.
-- ARGV: 1 request_id, 2 reserved_tokens, 3 actual_tokens, 4 reserved_micros, 5 actual_micros,
--       6 track_window (1/0), 7 track_budget (1/0)
-- Returns {tokens_state, budget_state}
--   tokens_state 1 = the log entry now carries actual_tokens, 0 = entry already left the window (nothing to do)
--   budget_state 1 = hold moved into spent, 2 = hold had lapsed; actual cost charged now,
--                0 = nothing to do (already settled or released: settling twice never charges twice)

local function int(n) return string.format('%d', n) end

local rid = ARGV[1]
local reserved_tokens, actual_tokens = tonumber(ARGV[2]), tonumber(ARGV[3])
local reserved, actual = tonumber(ARGV[4]), tonumber(ARGV[5])

local tokens_state, budget_state = 0, 0
if ARGV[6] == '1' then
  local old = rid .. '|' .. int(reserved_tokens)
  local score = redis.call('ZSCORE', KEYS[1], old)
  if score then
    tokens_state = 1
    if actual_tokens ~= reserved_tokens then
      -- Same score (the request's start time), new amount; the running sum follows.
      redis.call('ZREM', KEYS[1], old)
      redis.call('ZADD', KEYS[1], score, rid .. '|' .. int(actual_tokens))
      redis.call('INCRBY', KEYS[2], int(actual_tokens - reserved_tokens))
    end
  end
end

if ARGV[7] == '1' then
  local member = rid .. '|' .. int(reserved)
  if redis.call('ZREM', KEYS[4], member) == 1 then
    redis.call('HINCRBY', KEYS[3], 'held', int(-reserved))
    budget_state = 1
  elseif redis.call('ZREM', KEYS[5], member) == 1 then
    budget_state = 2
  end
  if budget_state ~= 0 and actual ~= 0 then
    redis.call('HINCRBY', KEYS[3], 'spent', int(actual))
  end
end
return {tokens_state, budget_state}
