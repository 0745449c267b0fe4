"""Lua scripts of the Redis live store.

Each script changes keys of one hash slot only, so it runs unchanged on Redis Cluster. Times
are epoch milliseconds; `int` formats a Lua number as a plain integer string, because Lua 5.1
prints large numbers in exponent form.

Session hash fields, named by one letter to keep each live session small:

    g game id, u provider user id, p PC id, s started at, h last heartbeat,
    x exhausted at (absent until exhausted), t state, d deadline,
    r end reason (absent while live), l lease until (absent when not leased).

The deadline index scores a session at the later of its deadline and its lease, so a leased
session comes due again only when the lease lapses.
"""

from __future__ import annotations

_INT = """
local function int(value)
  return string.format('%d', value)
end
"""

# KEYS: session hash, deadline index, heartbeat queue.
# ARGV: session id, game id, provider user id, now, session TTL ms, charge grace ms.
# Returns the touch status followed by the session fields g u p s h x t d r l after the touch.
# The rule is `playwave.domain.live.touch`, step for step.
TOUCH = (
    _INT
    + """
local fields = redis.call('HMGET', KEYS[1], 'g', 'u', 'p', 's', 'h', 'x', 't', 'd', 'r', 'l')
if not fields[1] then
  return {'MISSING'}
end

local now = tonumber(ARGV[4])
local status = 'TOUCHED'
if fields[1] ~= ARGV[2] or fields[2] ~= ARGV[3] then
  status = 'MISMATCH'
elseif fields[7] == 'ENDED' then
  status = 'ENDED'
elseif fields[7] == 'ENDING' then
  status = 'ENDING'
elseif now >= tonumber(fields[8]) then
  status = 'EXPIRED'
end

if status == 'TOUCHED' then
  local heartbeat = math.max(now, tonumber(fields[5]))
  local deadline = heartbeat + tonumber(ARGV[5])
  if fields[6] then
    deadline = math.min(deadline, tonumber(fields[6]) + tonumber(ARGV[6]))
  end
  fields[5] = int(heartbeat)
  fields[8] = int(deadline)
  redis.call('HSET', KEYS[1], 'h', fields[5], 'd', fields[8])
  redis.call('ZADD', KEYS[2], int(math.max(deadline, tonumber(fields[10] or '0'))), ARGV[1])
  redis.call('ZADD', KEYS[3], 'GT', fields[5], ARGV[1])
end

table.insert(fields, 1, status)
return fields
"""
)

# KEYS: session hash, deadline index.
# ARGV: session id, state, deadline, then field/value pairs of the session.
# A tombstone is never overwritten: an ended session cannot become live again.
PUT_SESSION = (
    _INT
    + """
local current = redis.call('HMGET', KEYS[1], 't', 'l')
if current[1] == 'ENDED' then
  return 0
end

local lease = tonumber(current[2] or '0')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if lease > 0 then
  redis.call('HSET', KEYS[1], 'l', int(lease))
end

if ARGV[2] == 'ENDED' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], int(math.max(tonumber(ARGV[3]), lease)), ARGV[1])
end
return 1
"""
)

# KEYS: session hash, deadline index.
# ARGV: session id, grace started at, session TTL ms, charge grace ms.
START_GRACE = (
    _INT
    + """
local fields = redis.call('HMGET', KEYS[1], 't', 'h', 'l')
if fields[1] ~= 'ACTIVE' then
  return 0
end

local grace_started_at = tonumber(ARGV[2])
local deadline = math.min(
  tonumber(fields[2]) + tonumber(ARGV[3]), grace_started_at + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 't', 'GRACE', 'x', int(grace_started_at), 'd', int(deadline))
redis.call('ZADD', KEYS[2], int(math.max(deadline, tonumber(fields[3] or '0'))), ARGV[1])
return 1
"""
)

# KEYS: session hash, deadline index.
# ARGV: session id, end reason, retry at.
MARK_ENDING = """
local state = redis.call('HGET', KEYS[1], 't')
if not state or state == 'ENDED' then
  return 0
end

redis.call('HSET', KEYS[1], 't', 'ENDING', 'r', ARGV[2], 'd', ARGV[3])
redis.call('HDEL', KEYS[1], 'l')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: session hash, deadline index, heartbeat queue.
# ARGV: session id, end reason, tombstone TTL ms.
MARK_ENDED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end

redis.call('HSET', KEYS[1], 't', 'ENDED', 'r', ARGV[2])
redis.call('HDEL', KEYS[1], 'l')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: deadline index.
# ARGV: now, max count, lease ms, key prefix of the indexed hashes.
# Leases and returns the ids due at `now`. An index entry whose hash is gone (expired, deleted
# or lost) is removed and still returned once, so the caller can settle it from the records.
LEASE_DUE = (
    _INT
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local lease_until = int(tonumber(ARGV[1]) + tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'l', lease_until)
    redis.call('ZADD', KEYS[1], lease_until, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return ids
"""
)

# KEYS: launcher hash, launcher deadline index.
# ARGV: launcher session id, last seen at, deadline, key TTL ms.
TOUCH_LAUNCHER = """
redis.call('HSET', KEYS[1], 'a', ARGV[2], 'd', ARGV[3])
redis.call('HDEL', KEYS[1], 'l')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: launcher hash, launcher deadline index.
# ARGV: launcher session id.
FORGET_LAUNCHER = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: nonce key.
# ARGV: expires at, now, key TTL ms.
# The stored value is the nonce's own expiry, compared with the caller's clock, so a nonce is
# accepted again once it expired even if Redis has not yet evicted the key.
REMEMBER_NONCE = """
local stored = redis.call('GET', KEYS[1])
if stored and tonumber(stored) > tonumber(ARGV[2]) then
  return 0
end

redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
