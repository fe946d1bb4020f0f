-- reserve.lua: check rpm + tpm + budget for one gateway key and, only if all pass, record the request.
--
-- All keys share the hash tag {<key_id>}, so the script runs on one node of a Redis Cluster.
-- KEYS[1] log     ZSET  member "<request_id>|<tokens>", score = ms timestamp (sliding-window log)
-- KEYS[2] tok     STRING sum of the tokens of every member of KEYS[1]
-- KEYS[3] budget  HASH  {spent = micro-dollars charged in the period, held = sum of the live holds}
-- KEYS[4] holds   ZSET  member "<request_id>|<micros>", score = ms when the hold lapses
-- KEYS[5] lapsed  ZSET  member "<request_id>|<micros>", score = ms when it lapsed (for a late settle)
-- KEYS[6] key     HASH  the gateway key's record (only its generation is read), when ARGV[13] is given
-- ARGV: 1 now_ms ('' = use Redis TIME), 2 window_ms, 3 rpm (-1 = none), 4 tpm (-1 = none), 5 tokens,
--       6 budget_micros (-1 = none), 7 cost_micros, 8 request_id, 9 hold_ttl_ms,
--       10 budget_expire_at_ms (app clock; -1 = never), 11 lapsed_keep_ms, 12 track_window (1/0),
--       13 the key record generation the caller holds ('' or absent = do not check)
-- Returns {status, count, tokens_used, oldest_ms, retry_rpm_ms, retry_tpm_ms, spent, held, now_ms}
--   status 0 = recorded, 1 = over rpm/tpm, 2 = over budget, 3 = the key record changed since the caller
--   read it (nothing recorded: re-read the key and try again). Recording uses ZADD NX, so reserving the
--   same request_id twice counts it once.
--   count/tokens_used/held include this request when status is 0. retry_*: -1 = that limit passed,
--   -2 = the request alone is larger than tpm (can never fit). oldest_ms: -1 when the log is empty.

local function num(s) return tonumber(s) end
local function int(n) return string.format('%d', n) end
local function amount_of(member)
  return tonumber(string.match(member, '|(%-?%d+)$')) or 0
end

local now
if ARGV[1] == '' then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = num(t[1]) * 1000 + math.floor(num(t[2]) / 1000)
else
  now = num(ARGV[1])
end
if ARGV[13] and ARGV[13] ~= '' and (redis.call('HGET', KEYS[6], 'gen') or '0') ~= ARGV[13] then
  return {3, 0, 0, -1, -1, -1, 0, 0, now}
end
local window, rpm, tpm, tokens = num(ARGV[2]), num(ARGV[3]), num(ARGV[4]), num(ARGV[5])
local budget, cost, rid = num(ARGV[6]), num(ARGV[7]), ARGV[8]
local hold_ttl, expire_at, lapsed_keep = num(ARGV[9]), num(ARGV[10]), num(ARGV[11])
local track_window = ARGV[12] == '1'
-- Relative TTLs (PEXPIRE, not PEXPIREAT), so an injected clock never sets an expiry in Redis' past.
-- A period's counters live until its end plus grace; holds and lapsed holds at least as long as they matter.
local keep_ms = hold_ttl + lapsed_keep
if expire_at >= 0 then keep_ms = math.max(expire_at - now, keep_ms) end

local count, used, oldest = 0, 0, -1
local retry_rpm, retry_tpm = -1, -1
if track_window then
  -- Drop entries that left the window, subtracting their tokens from the running sum.
  local cutoff = int(now - window)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  if #gone > 0 then
    local freed = 0
    for _, m in ipairs(gone) do freed = freed + amount_of(m) end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
    if freed ~= 0 then redis.call('DECRBY', KEYS[2], int(freed)) end
  end
  count = redis.call('ZCARD', KEYS[1])
  local raw = redis.call('GET', KEYS[2])
  used = num(raw or '0')
  if (count == 0 and used ~= 0) or (count > 0 and not raw) or used < 0 then
    -- The sum drifted (evicted or expired apart from the log): rebuild it from the log.
    used = 0
    for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do used = used + amount_of(m) end
    redis.call('SET', KEYS[2], int(used), 'PX', int(window + 1000))
  end
  if rpm >= 0 and count + 1 > rpm then
    -- The request fits once the entry at index count-rpm (oldest first) leaves the window.
    local e = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
    if #e == 2 then retry_rpm = num(e[2]) + window - now else retry_rpm = window end
  end
  if tpm >= 0 and used + tokens > tpm then
    if tokens > tpm then
      retry_tpm = -2
    else
      local need, freed = used + tokens - tpm, 0
      local e = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
      retry_tpm = window
      for i = 1, #e, 2 do
        freed = freed + amount_of(e[i])
        if freed >= need then retry_tpm = num(e[i + 1]) + window - now; break end
      end
    end
  end
end

local spent, held = 0, 0
local track_budget = budget >= 0
if track_budget then
  -- Holds whose time ran out (their process crashed or hung) stop counting; keep them aside a while
  -- so that a late settle still charges the real cost exactly once.
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', int(now))
  if #lapsed > 0 then
    local freed = 0
    for _, m in ipairs(lapsed) do
      freed = freed + amount_of(m)
      redis.call('ZADD', KEYS[5], int(now), m)
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', int(now))
    redis.call('HINCRBY', KEYS[3], 'held', int(-freed))
    redis.call('PEXPIRE', KEYS[5], int(keep_ms))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', int(now - lapsed_keep))
  local v = redis.call('HMGET', KEYS[3], 'spent', 'held')
  spent, held = num(v[1] or '0'), num(v[2] or '0')
  local live = redis.call('ZCARD', KEYS[4])
  if (live == 0 and held ~= 0) or (live > 0 and not v[2]) or held < 0 then
    held = 0
    for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do held = held + amount_of(m) end
    redis.call('HSET', KEYS[3], 'held', int(held))
  end
end

local function oldest_ms()
  local e = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #e == 2 then return num(e[2]) end
  return -1
end

if track_budget and spent + held + cost > budget then
  if track_window then oldest = oldest_ms() end
  return {2, count, used, oldest, retry_rpm, retry_tpm, spent, held, now}
end
if retry_rpm ~= -1 or retry_tpm ~= -1 then
  oldest = oldest_ms()
  return {1, count, used, oldest, retry_rpm, retry_tpm, spent, held, now}
end

-- Every check passed: record the request, its tokens and its budget hold.
if track_window then
  if redis.call('ZADD', KEYS[1], 'NX', int(now), rid .. '|' .. int(tokens)) == 1 then
    redis.call('INCRBY', KEYS[2], int(tokens))
    count = count + 1
    used = used + tokens
  end
  redis.call('PEXPIRE', KEYS[1], int(window + 1000))
  redis.call('PEXPIRE', KEYS[2], int(window + 1000))
  oldest = oldest_ms()
end
if track_budget then
  if redis.call('ZADD', KEYS[4], 'NX', int(now + hold_ttl), rid .. '|' .. int(cost)) == 1 then
    held = held + cost
    redis.call('HINCRBY', KEYS[3], 'held', int(cost))
  end
  if expire_at >= 0 then
    redis.call('PEXPIRE', KEYS[3], int(keep_ms))
  end
  redis.call('PEXPIRE', KEYS[4], int(keep_ms))
end
return {0, count, used, oldest, retry_rpm, retry_tpm, spent, held, now}
