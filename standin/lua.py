"""The Lua scripts stand-in runs in Redis (each touches one hash slot only; see keys.py).

Windowed counters are a sorted set per card and kind: one member per approval,
`<decision_id>:<amount>` scored by its time in ms. The script drops members
older than the window and sums the rest, so the window is exact and sliding: no
bucket boundary where a card could spend its limit twice (end of one bucket,
start of the next), and no approximation to tune. The set stays tiny because
only approvals enter it and the count limit caps them (a handful per card per
day); members are idempotent by decision id, so replaying an approval (moving
the local backlog) never counts it twice. The key expires one window after the
last approval, so idle cards cost nothing.
"""

from __future__ import annotations

__all__ = ["ABSORB", "APPEND", "ARG_SEPARATOR", "DECIDE", "RECORD_FIELDS"]

# DECIDE takes its 15 values as one argument joined by this (ASCII unit separator, which
# no value holds: numbers, codes, rule names, ids, the instance name checked at load):
# redis-py packs each argument in Python, and 15 separate ones cost more client CPU per
# decision than the rest of the call.
ARG_SEPARATOR = "\x1f"

# Idempotency record fields, in the order DECIDE returns them after its "fresh" flag.
RECORD_FIELDS = (
    "decision_id",
    "response_code",
    "rule",
    "approval_code",
    "risk_tier",
    "reason",
    "decided_at_ms",
    "gateway_instance",
)

# One decision, atomically: replay an earlier decision of the same request, or check
# card status, the static decline, the amount and count in the window; count the
# approval; record the result for the request id. Returns {fresh(1|0), RECORD_FIELDS...}.
DECIDE = """
-- KEYS[1] idempotency record  KEYS[2] card status  KEYS[3] spend zset of the kind
-- ARGV[1]: the 15 values below joined by ARG_SEPARATOR (one argument: see ARG_SEPARATOR)
-- A[1] now_ms  A[2] cutoff_ms (drop approvals at or before)  A[3] window_ms
-- A[4] amount  A[5] max_amount  A[6] max_count  A[7] kind
-- A[8] static rule ('' = none)  A[9] static code
-- A[10] decision_id  A[11] approval_code  A[12] risk_tier  A[13] reason
-- A[14] gateway_instance  A[15] idempotency ttl ms
local A = {}
for v in string.gmatch(ARGV[1] .. '\\31', '([^\\31]*)\\31') do A[#A + 1] = v end
local FIELDS = {'decision_id', 'response_code', 'rule', 'approval_code',
                'risk_tier', 'reason', 'decided_at_ms', 'gateway_instance'}
local earlier = redis.call('HMGET', KEYS[1], unpack(FIELDS))
if earlier[1] then
  table.insert(earlier, 1, 0)
  return earlier
end
local code, rule
local status = redis.call('GET', KEYS[2])
if status == 'blocked' then
  code, rule = '05', 'card_status.blocked'
elseif status == 'lost' then
  code, rule = '41', 'card_status.lost'
elseif status == 'stolen' then
  code, rule = '43', 'card_status.stolen'
elseif A[8] ~= '' then
  code, rule = A[9], A[8]
else
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', A[2])
  local members = redis.call('ZRANGE', KEYS[3], 0, -1)
  local total = 0
  for i = 1, #members do
    total = total + tonumber(string.match(members[i], ':(%d+)$'))
  end
  if total + tonumber(A[4]) > tonumber(A[5]) then
    code, rule = '61', 'limit.amount.' .. A[7]
  elseif #members + 1 > tonumber(A[6]) then
    code, rule = '65', 'limit.count.' .. A[7]
  else
    code, rule = '00', 'approved'
    redis.call('ZADD', KEYS[3], A[1], A[10] .. ':' .. A[4])
    redis.call('PEXPIRE', KEYS[3], A[3])
  end
end
local approval = ''
if code == '00' then approval = A[11] end
local record = {A[10], code, rule, approval, A[12], A[13], A[1], A[14]}
local pairs_ = {}
for i = 1, #FIELDS do
  pairs_[#pairs_ + 1] = FIELDS[i]
  pairs_[#pairs_ + 1] = record[i]
end
redis.call('HSET', KEYS[1], unpack(pairs_))
redis.call('PEXPIRE', KEYS[1], A[15])
table.insert(record, 1, 1)
return record
"""

# Bring a decision made locally (Redis was down) into the fleet's state: count it
# if it was an approval still inside the window, and record it for its request id
# unless that request was meanwhile decided elsewhere. Idempotent. Returns 1, or 0
# on a conflict (the request id already maps to another decision).
ABSORB = """
-- KEYS[1] idempotency record  KEYS[2] spend zset of the kind
-- ARGV[1] decided_at_ms  ARGV[2] cutoff_ms  ARGV[3] window_ms  ARGV[4] zset member ('' = declined)
-- ARGV[5] idempotency ttl ms  ARGV[6..13] record values in RECORD_FIELDS order
if ARGV[4] ~= '' and tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
end
local FIELDS = {'decision_id', 'response_code', 'rule', 'approval_code',
                'risk_tier', 'reason', 'decided_at_ms', 'gateway_instance'}
local earlier = redis.call('HGET', KEYS[1], 'decision_id')
if earlier then
  if earlier == ARGV[6] then return 1 end
  return 0
end
local pairs_ = {}
for i = 1, #FIELDS do
  pairs_[#pairs_ + 1] = FIELDS[i]
  pairs_[#pairs_ + 1] = ARGV[5 + i]
end
redis.call('HSET', KEYS[1], unpack(pairs_))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Append one decision to its partition stream exactly once: the marker, in the same
# slot as the stream, is set in the same atomic step as XADD. The entry travels as one
# JSON array [field, value, ...]: packing ~30 pairs as separate arguments costs the
# client more CPU than the whole rest of a decision. Returns {appended(1|0), stream id}.
APPEND = """
-- KEYS[1] partition stream  KEYS[2] dedupe marker of the decision
-- ARGV[1] marker ttl ms  ARGV[2] JSON array: field, value, field, value, ...
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], '*', unpack(cjson.decode(ARGV[2])))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
"""
