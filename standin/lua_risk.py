"""The Lua scripts of the fleet-wide risk steps (each touches one hash slot; see keys.py).

A window is a sorted set of `<id>:<amount>` members scored by Redis time (ms) and a
running total beside it in the same slot, so a step costs O(1) plus the members that
expired since the last one (at most 500 dropped per call; the rest go on the next):
with a thousand approvals a second a budget's shard holds hundreds of thousands of
members, which summing on every call (as the card's tiny windows do) could not afford.
"""

from __future__ import annotations

__all__ = ["BUDGET_ABSORB", "BUDGET_RELEASE", "BUDGET_RESERVE", "VELOCITY", "WINDOW_TOTAL"]

# Redis time in ms, and a function that drops a window's members older than `cutoff` from the
# set and their amounts from its total.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function expire(set, sum, cutoff)
  local old = redis.call('ZRANGEBYSCORE', set, '-inf', cutoff, 'LIMIT', 0, 500)
  if #old == 0 then return end
  local freed = 0
  for i = 1, #old do freed = freed + tonumber(string.match(old[i], ':(%d+)$')) end
  redis.call('ZREM', set, unpack(old))
  if redis.call('ZCARD', set) == 0 then redis.call('DEL', sum) else redis.call('DECRBY', sum, freed) end
end
local function add(set, sum, member, amount, ttl)
  redis.call('ZADD', set, now, member)
  redis.call('INCRBY', sum, amount)
  redis.call('PEXPIRE', set, ttl)
  redis.call('PEXPIRE', sum, ttl)
end
"""

# Reserve `amount` on one budget shard for a decision, unless the shard's total would pass its
# cap. Idempotent by member (a retried reserve does not count twice). Returns 1 reserved, 0 full.
BUDGET_RESERVE = (
    """
-- KEYS[1] shard set  KEYS[2] shard sum
-- ARGV[1] period ms  ARGV[2] member <decision_id>:<amount>  ARGV[3] amount  ARGV[4] shard cap
"""
    + _PRELUDE
    + """
expire(KEYS[1], KEYS[2], now - tonumber(ARGV[1]))
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if total + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return 0 end
add(KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[1])
return 1
"""
)

# Count an approval made locally (Redis was away) once it is moved: at its own time, whatever the
# cap (it was given), unless already there or out of the period. Returns 1 counted, 0 not.
BUDGET_ABSORB = (
    """
-- KEYS[1] shard set  KEYS[2] shard sum
-- ARGV[1] period ms  ARGV[2] member <decision_id>:<amount>  ARGV[3] amount  ARGV[4] decided_at ms
"""
    + _PRELUDE
    + """
expire(KEYS[1], KEYS[2], now - tonumber(ARGV[1]))
if tonumber(ARGV[4]) <= now - tonumber(ARGV[1]) then return 0 end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""
)

# Give back a reservation whose decision was not an approval, or (ARGV[2]) shrink an approval's to
# what a partial reversal left, at the same time. Idempotent: 1 released, 0 absent.
BUDGET_RELEASE = """
-- KEYS[1] shard set  KEYS[2] shard sum  ARGV[1] member <decision_id>:<amount>
-- ARGV[2] (optional) the member kept in its place, <decision_id>:<remaining amount>
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local freed = tonumber(string.match(ARGV[1], ':(%d+)$'))
local kept = ARGV[2] or ''
if kept ~= '' then
  redis.call('ZADD', KEYS[1], score, kept)
  freed = freed - tonumber(string.match(kept, ':(%d+)$'))
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('DECRBY', KEYS[2], freed)
end
return 1
"""

# The total of one window now (status, metrics).
WINDOW_TOTAL = (
    """
-- KEYS[1] set  KEYS[2] sum  ARGV[1] period ms
"""
    + _PRELUDE
    + """
expire(KEYS[1], KEYS[2], now - tonumber(ARGV[1]))
return tonumber(redis.call('GET', KEYS[2]) or '0')
"""
)

# One stand-in request at a merchant's terminal: admitted (counted in both windows) unless either
# window of its channel is full. Idempotent by member (a repeated request is admitted again,
# counted once). Returns '' admitted, or the rule that stopped it.
VELOCITY = (
    """
-- KEYS[1] merchant set  KEYS[2] merchant sum  KEYS[3] terminal set  KEYS[4] terminal sum
-- ARGV[1] window ms  ARGV[2] member <request digest>:<amount>  ARGV[3] amount
-- ARGV[4] merchant max count  ARGV[5] merchant max amount  (-1: no merchant window)
-- ARGV[6] terminal max count  ARGV[7] terminal max amount  (-1: no terminal window)
"""
    + _PRELUDE
    + """
local amount = tonumber(ARGV[3])
local windows = {{KEYS[1], KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), 'merchant'},
                 {KEYS[3], KEYS[4], tonumber(ARGV[6]), tonumber(ARGV[7]), 'terminal'}}
for _, w in ipairs(windows) do
  if w[3] >= 0 then
    expire(w[1], w[2], now - tonumber(ARGV[1]))
    if redis.call('ZSCORE', w[1], ARGV[2]) then return '' end
    if redis.call('ZCARD', w[1]) + 1 > w[3] then return 'velocity.' .. w[5] .. '.count' end
    local total = tonumber(redis.call('GET', w[2]) or '0')
    if total + amount > w[4] then return 'velocity.' .. w[5] .. '.amount' end
  end
end
for _, w in ipairs(windows) do
  if w[3] >= 0 then add(w[1], w[2], ARGV[2], amount, ARGV[1]) end
end
return ''
"""
)
