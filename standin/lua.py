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

__all__ = ["ABSORB", "APPEND", "DECIDE", "RECORD_FIELDS"]

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
-- ARGV[1] now_ms  ARGV[2] cutoff_ms (drop approvals at or before)  ARGV[3] window_ms
-- ARGV[4] amount  ARGV[5] max_amount  ARGV[6] max_count  ARGV[7] kind
-- ARGV[8] static rule ('' = none)  ARGV[9] static code
-- ARGV[10] decision_id  ARGV[11] approval_code  ARGV[12] risk_tier  ARGV[13] reason
-- ARGV[14] gateway_instance  ARGV[15] idempotency ttl ms
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
elseif ARGV[8] ~= '' then
  code, rule = ARGV[9], ARGV[8]
else
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
  local members = redis.call('ZRANGE', KEYS[3], 0, -1)
  local total = 0
  for i = 1, #members do
    total = total + tonumber(string.match(members[i], ':(%d+)$'))
  end
  if total + tonumber(ARGV[4]) > tonumber(ARGV[5]) then
    code, rule = '61', 'limit.amount.' .. ARGV[7]
  elseif #members + 1 > tonumber(ARGV[6]) then
    code, rule = '65', 'limit.count.' .. ARGV[7]
  else
    code, rule = '00', 'approved'
    redis.call('ZADD', KEYS[3], ARGV[1], ARGV[10] .. ':' .. ARGV[4])
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
end
local approval = ''
if code == '00' then approval = ARGV[11] end
local record = {ARGV[10], code, rule, approval, ARGV[12], ARGV[13], ARGV[1], ARGV[14]}
local pairs_ = {}
for i = 1, #FIELDS do
  pairs_[#pairs_ + 1] = FIELDS[i]
  pairs_[#pairs_ + 1] = record[i]
end
redis.call('HSET', KEYS[1], unpack(pairs_))
redis.call('PEXPIRE', KEYS[1], ARGV[15])
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
