"""The Lua scripts stand-in runs in Redis (each touches one hash slot only; see keys.py).

Windowed counters are a sorted set per card and kind: one member per approval,
`<decision_id>:<amount>` scored by its time in ms. The script drops members
older than the window and sums the rest, so the window is exact and sliding: no
bucket boundary where a card could spend its limit twice (end of one bucket,
start of the next), and no approximation to tune. The set stays tiny because
only approvals enter it and the count limit caps them (a handful per card per
day); members are idempotent by decision id, so replaying an approval (moving
the local backlog) never counts it twice. A reversal rewrites the member to the
amount that remains (keeping its time) or removes it (a full reversal frees the
count too). The key expires one window after the last approval, so idle cards
cost nothing.

Time is Redis's (`TIME`), one clock for the fleet: a gateway whose clock is
slow cannot write approvals that the others expire early.

A request's record (`req:<acquirer>:<request id>`) holds its decision, a keyed
digest of its content (a repeat with another digest is refused: a reused id), the
amount it drew on the card's window and the member it wrote, and `answered_at_ms`,
the last time a gateway gave this decision to the acquirer (each replay moves it),
with `answered_by`, the id of the call that did: when two decisions exist for one
request (one made locally while Redis was away), the one the acquirer was told
last wins, and a call whose reply was lost told nobody.

`unadvised` counts the card's journal entries (decisions, reversals) not yet
acknowledged by the issuer; a reversal of an issuer decision waits behind them.
"""

from __future__ import annotations

__all__ = [
    "ABSORB",
    "APPEND",
    "BALANCE_SET",
    "DECIDE",
    "DECIDE_ARGS",
    "RECORD_FIELDS",
    "REVERSE",
    "UNADVISED_ADD",
    "UNADVISED_DONE",
]

# Idempotency record fields, in the order DECIDE returns them after its status.
RECORD_FIELDS = (
    "decision_id",
    "response_code",
    "rule",
    "approval_code",
    "risk_tier",
    "reason",
    "decided_at_ms",
    "gateway_instance",
    "answered_at_ms",
)

# Redis time in ms (scripts replicate their effects, so TIME is allowed).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# One decision, atomically: replay an earlier decision of the same request (refuse a reused id
# with another digest), decline an original whose reversal came first, or check card status, the
# static decline, the amount and count in the window; count the approval; record the result.
# An acquirer advice (advice_rule) goes the same way: recorded approved and counted, never refused
# but for a reused id; a repeat (or any approved record of the request) is replayed.
# Returns {status, RECORD_FIELDS..., policy_version}: status 1 fresh, 0 replay, 2 reused id (nothing
# changed); policy_version is '' for a record written without one (before it, or by ABSORB).
# DECIDE's ARGV, in order: the script names each slot (`local <name> = ARGV[i]`), and the caller
# builds its arguments by these names (counters.py), so neither side counts positions.
DECIDE_ARGS = (
    "window_ms",
    "amount",
    "max_amount",
    "max_count",
    "kind",
    "static_rule",
    "static_code",
    "decision_id",
    "approval_code",
    "risk_tier",
    "reason",
    "gateway_instance",
    "record_ttl_ms",
    "digest",
    "txn_amount",
    "unadvised_ttl_ms",
    "advice_rule",
    "policy_version",
    "currency",
    "again",
    "known_max_amount",
    "known_max_count",
    "known_static_rule",
    "known_static_code",
)


def _named_args(names: tuple[str, ...]) -> str:
    """Lua locals naming each ARGV slot: `local <name> = ARGV[<i>]`."""
    return "".join(f"local {name} = ARGV[{i}]\n" for i, name in enumerate(names, 1))


DECIDE = (
    """
-- KEYS[1] record  KEYS[2] card status  KEYS[3] spend zset of the kind  KEYS[4] reversal held
-- KEYS[5] unadvised counter  KEYS[6] the card's last issuer-reported balance (hash, see BALANCE_SET)
-- ARGV: DECIDE_ARGS, in order (named below); decision_id, the proposed one, also names this call
-- (answered_by); advice_rule is set for an acquirer advice ('' = a stand-in decision): approved and
-- counted whatever the card status, a held reversal, the static rule or the window say, and it
-- supersedes an earlier decline of the same request (the merchant forced it after that answer);
-- currency: a known balance in the transaction's currency caps an approval at the balance minus the
-- stand-in approvals since it was reported (51 balance.available); again ('1' or ''): a replay will be
-- journaled again with its new answered_at (an attempt may have reached an issuer meanwhile), so it
-- counts one more unadvised entry; known_*: the limit and static rule when the card's balance in the
-- transaction's currency is known (the policy's known_balance_scale; the same as the others at 1.0)
"""
    + _NOW
    + _named_args(DECIDE_ARGS)
    + """
local FIELDS = {'decision_id', 'response_code', 'rule', 'approval_code', 'risk_tier', 'reason',
                'decided_at_ms', 'gateway_instance', 'answered_at_ms'}
local advice = advice_rule ~= ''
local earlier = redis.call('HMGET', KEYS[1], 'digest', unpack(FIELDS))
if earlier[2] then
  if earlier[1] and earlier[1] ~= digest then return {2} end  -- no digest: a record from before
  if not advice or earlier[3] == '00' then
    redis.call('HSET', KEYS[1], 'answered_at_ms', now, 'answered_by', decision_id)
    earlier[10] = tostring(now)
    earlier[1] = 0
    earlier[11] = redis.call('HMGET', KEYS[1], 'policy_version')[1] or ''  -- HMGET: the ACL's command
    if again ~= '' then  -- journaled again with this answered_at: one more entry to acknowledge
      redis.call('INCR', KEYS[5])
      redis.call('PEXPIRE', KEYS[5], unadvised_ttl_ms)
    end
    return earlier
  end
end
local code, rule
local member = ''
local status = redis.call('GET', KEYS[2])
local balance = redis.call('HMGET', KEYS[6], 'available', 'spent', 'currency')
local known = balance[1] and balance[3] == currency
local function over_balance()
  if not known then return false end
  return tonumber(balance[2] or '0') + tonumber(txn_amount) > tonumber(balance[1])
end
if known then
  static_rule, static_code = known_static_rule, known_static_code
  max_amount, max_count = known_max_amount, known_max_count
end
if advice then
  code, rule = '00', advice_rule
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(window_ms))
  member = decision_id .. ':' .. amount
  redis.call('ZADD', KEYS[3], now, member)
  redis.call('PEXPIRE', KEYS[3], window_ms)
elseif redis.call('EXISTS', KEYS[4]) == 1 then
  code, rule = '05', 'reversal.before_original'
elseif status == 'blocked' then
  code, rule = '05', 'card_status.blocked'
elseif status == 'lost' then
  code, rule = '41', 'card_status.lost'
elseif status == 'stolen' then
  code, rule = '43', 'card_status.stolen'
elseif static_rule ~= '' then
  code, rule = static_code, static_rule
else
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(window_ms))
  local members = redis.call('ZRANGE', KEYS[3], 0, -1)
  local total = 0
  for i = 1, #members do
    total = total + tonumber(string.match(members[i], ':(%d+)$'))
  end
  if total + tonumber(amount) > tonumber(max_amount) then
    code, rule = '61', 'limit.amount.' .. kind
  elseif #members + 1 > tonumber(max_count) then
    code, rule = '65', 'limit.count.' .. kind
  elseif over_balance() then
    code, rule = '51', 'balance.available'
  else
    code, rule = '00', 'approved'
    member = decision_id .. ':' .. amount
    redis.call('ZADD', KEYS[3], now, member)
    redis.call('PEXPIRE', KEYS[3], window_ms)
  end
end
local approval = ''
if code == '00' then
  approval = approval_code
  if known then  -- an approval since the balance spends it
    redis.call('HINCRBY', KEYS[6], 'spent', txn_amount)
  end
end
local record = {decision_id, code, rule, approval, risk_tier, reason, tostring(now), gateway_instance,
                tostring(now)}
local pairs_ = {'digest', digest, 'kind', kind, 'amount', amount, 'txn_amount', txn_amount,
                'member', member, 'answered_by', decision_id, 'policy_version', policy_version}
for i = 1, #FIELDS do
  pairs_[#pairs_ + 1] = FIELDS[i]
  pairs_[#pairs_ + 1] = record[i]
end
redis.call('HSET', KEYS[1], unpack(pairs_))
redis.call('PEXPIRE', KEYS[1], record_ttl_ms)
redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], unadvised_ttl_ms)
table.insert(record, 1, 1)
record[#record + 1] = policy_version
return record
"""
)

# Bring a decision made locally (Redis was down) into the fleet's state. Returns:
#   'absorbed'   the request had no record: recorded and counted (advise it)
#   'same'       this very decision is the record (Redis counted it, only its append failed)
#   'reused'     the record is another transaction under the same id: counted, record kept
#   {'replaced', answered_at_ms}  another decision of the same request, told earlier: this one wins
#                (advise it, with this answered_at: later than a lost call's record, see `told`)
#   {'superseded', RECORD_FIELDS...}  another decision of the same request wins (told later, or
#                the same outcome): advise that one instead (it may never have been journaled: a
#                lost reply), built from this one's content
#   {'again', RECORD_FIELDS...}  as superseded, the same outcome told later than the record says:
#                the record's answered_at moves to this one's (`told`, as a replay) and the card's
#                unadvised count grows by one: migrate.py journals it again with that answered_at
ABSORB = """
-- KEYS[1] record  KEYS[2] spend zset of the kind  KEYS[3] unadvised counter
-- ARGV[1] decided_at_ms  ARGV[2] cutoff_ms  ARGV[3] window_ms  ARGV[4] spend member ('' = declined)
-- ARGV[5] record ttl ms  ARGV[6] answered_at_ms  ARGV[7] digest  ARGV[8] amount (limit currency)
-- ARGV[9] kind  ARGV[10] amount (transaction currency)  ARGV[11] unadvised ttl ms
-- ARGV[12..20] record values in RECORD_FIELDS order
-- ARGV[21] the id of a DECIDE call whose reply this gateway lost before deciding locally ('' = none)
local FIELDS = {'decision_id', 'response_code', 'rule', 'approval_code', 'risk_tier', 'reason',
                'decided_at_ms', 'gateway_instance', 'answered_at_ms'}
local function count()
  if ARGV[4] ~= '' and tonumber(ARGV[1]) > tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
    if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then
      redis.call('PEXPIRE', KEYS[2], ARGV[3])
    end
  end
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[11])
end
local function record(told)  -- told: the answered_at_ms to keep (ARGV[20] is the decision's own)
  local pairs_ = {'digest', ARGV[7], 'kind', ARGV[9], 'amount', ARGV[8], 'txn_amount', ARGV[10],
                  'member', ARGV[4], 'final_amount', ''}
  for i = 1, #FIELDS do
    pairs_[#pairs_ + 1] = FIELDS[i]
    pairs_[#pairs_ + 1] = ARGV[11 + i]
  end
  pairs_[#pairs_] = told
  redis.call('HSET', KEYS[1], unpack(pairs_))
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local e = redis.call('HMGET', KEYS[1], 'decision_id', 'digest', 'response_code', 'answered_at_ms',
                     'member', 'kind', 'answered_by')
if not e[1] then
  count()
  record(ARGV[20])
  return 'absorbed'
end
if e[1] == ARGV[12] then return 'same' end
if e[2] ~= ARGV[7] then
  count()
  return 'reused'
end
local earlier_approved = e[3] == '00'
local this_approved = ARGV[13] == '00'
-- The record was last "answered" by the very call whose reply this gateway lost: nobody was told
-- it (its script may even have run after this decision was answered), so this decision is later.
local lost = ARGV[21] ~= '' and e[7] == ARGV[21]
-- When this decision was told, as the issuer must order it: after a lost call's record, even when
-- the lost script ran (Redis TIME) after this decision was answered (the advices' order, chaos-money)
local told = tonumber(ARGV[6])
local recorded_at = tonumber(e[4] or '0')
if lost and told <= recorded_at then told = recorded_at + 1 end
local later = lost or told > recorded_at
-- The same outcome told later: the record's decision stands for both, told as late as this one was,
-- so a decision told in between (another gateway's) does not win over what the acquirer heard last.
local again = earlier_approved == this_approved and later
if again then
  redis.call('HSET', KEYS[1], 'answered_at_ms', told, 'answered_by', ARGV[12])
  -- journaled again with this answered_at (migrate.py): one more entry to acknowledge (if the
  -- record's decision was never journaled, this over-counts by one: the safe side)
  redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[11])
end
if earlier_approved == this_approved or not later then
  local kept = redis.call('HMGET', KEYS[1], unpack(FIELDS))
  table.insert(kept, 1, again and 'again' or 'superseded')
  return kept
end
if e[5] and e[5] ~= '' then
  redis.call('ZREM', KEYS[2], e[5])  -- the earlier approval no longer holds
end
count()
record(told)
return {'replaced', tostring(told)}
"""

# Append one journal entry to its partition stream exactly once: the marker, in the same
# slot as the stream, is set in the same atomic step as XADD. The entry travels as one
# JSON array [field, value, ...]: packing ~30 pairs as separate arguments costs the
# client more CPU than the whole rest of a decision. Returns {appended(1|0), stream id}.
APPEND = """
-- KEYS[1] partition stream  KEYS[2] dedupe marker of the entry
-- ARGV[1] marker ttl ms  ARGV[2] JSON array: field, value, field, value, ...
local seen = redis.call('GET', KEYS[2])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], '*', unpack(cjson.decode(ARGV[2])))
redis.call('SET', KEYS[2], id, 'PX', ARGV[1])
return {1, id}
"""

# One reversal, atomically, idempotent by (acquirer, reversal id). Returns {status, decision id}:
#   'applied'    a stand-in approval reduced to the final amount (its window released): journal it;
#                followed by the approval's window member before and after ('' = gone), which the
#                exposure budgets rewrite alike (exposure.py)
#   'no_effect'  the original is already at this amount or lower
#   'declined'   the original was declined: no effect, but journaled (types.ReversalStatus.DECLINED)
#   'stored'     no stand-in decision for the original: recorded, held (an original arriving later
#                in stand-in is declined) and queued behind the card's unadvised entries: journal it
#   'forward'    no stand-in decision and nothing of the card waits: send it to the issuer now
#                (only with ARGV[6] = '0'; nothing recorded but the hold)
#   'repeat'     seen before: the first status and decision id are returned after it
REVERSE = """
-- KEYS[1] original's record  KEYS[2] reversal's record  KEYS[3] reversal held for the original
-- KEYS[4] spend zset purchase  KEYS[5] spend zset cash  KEYS[6] unadvised counter
-- ARGV[1] final amount (transaction currency)  ARGV[2] decision id of this reversal's entry
-- ARGV[3] hold ttl ms  ARGV[4] record ttl ms  ARGV[5] unadvised ttl ms  ARGV[6] '1' = store, never forward
-- ARGV[7] the original's amount (transaction currency; '0' = not said): a record of another amount is
-- another content under the same ids (a reused id), not this reversal's original
local seen = redis.call('HMGET', KEYS[2], 'status', 'decision_id')
if seen[1] then return {'repeat', seen[1], seen[2]} end
local final = tonumber(ARGV[1])
local function remember(status)
  redis.call('HSET', KEYS[2], 'status', status, 'decision_id', ARGV[2], 'final_amount', ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local function queue(status)
  remember(status)
  redis.call('INCR', KEYS[6])
  redis.call('PEXPIRE', KEYS[6], ARGV[5])
  return {status, ARGV[2]}
end
local o = redis.call('HMGET', KEYS[1], 'response_code', 'txn_amount', 'final_amount', 'amount', 'member',
                     'kind', 'decision_id')
local original = tonumber(ARGV[7] or '0')
if o[1] and original > 0 and o[2] and o[2] ~= '' and tonumber(o[2]) > 0 and tonumber(o[2]) ~= original then
  o = {}
end
if not o[1] then
  local held = redis.call('GET', KEYS[3])
  if not held or final < tonumber(held) then
    redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
  end
  if ARGV[6] == '0' and tonumber(redis.call('GET', KEYS[6]) or '0') <= 0 then
    return {'forward', ARGV[2]}
  end
  return queue('stored')
end
if o[1] ~= '00' then
  return queue('declined')
end
local txn = tonumber(o[2] or '0')
local current = txn
if o[3] and o[3] ~= '' then current = tonumber(o[3]) end
if txn > 0 and final >= current then
  remember('no_effect')
  return {'no_effect', ARGV[2]}
end
local spend = KEYS[4]
if o[6] == 'cash' then spend = KEYS[5] end
local member = ''
if txn > 0 and o[5] and o[5] ~= '' then  -- a record without amounts (older format): counters kept
  local score = redis.call('ZSCORE', spend, o[5])
  redis.call('ZREM', spend, o[5])
  local remaining = math.ceil(final * tonumber(o[4]) / tonumber(o[2]))
  if score and remaining > 0 then
    member = o[7] .. ':' .. remaining
    redis.call('ZADD', spend, score, member)
  end
end
redis.call('HSET', KEYS[1], 'final_amount', ARGV[1], 'member', member)
local applied = queue('applied')
-- what the exposure budgets must do alike (exposure.py): the approval's member, and its replacement
applied[3], applied[4] = o[5] or '', member
return applied
"""

# The issuer reported the card's available balance after a transaction it decided: the stand-in
# approvals counted against the previous one no longer apply (the issuer's figure is newer).
# It expires after the configured time: a card whose balance is stale keeps the policy's limits.
BALANCE_SET = (
    """
-- KEYS[1] the card's balance hash
-- ARGV[1] available (minor units)  ARGV[2] currency  ARGV[3] ttl ms
"""
    + _NOW
    + """
redis.call('HSET', KEYS[1], 'available', ARGV[1], 'currency', ARGV[2], 'spent', 0, 'at_ms', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return now
"""
)

# The issuer acknowledged one of the card's journal entries.
# One more journal entry of the card to acknowledge (an entry appended without DECIDE: deciding.py).
UNADVISED_ADD = """
-- KEYS[1] unadvised counter  ARGV[1] ttl ms
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"""

UNADVISED_DONE = """
-- KEYS[1] unadvised counter
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 1 then return redis.call('DECR', KEYS[1]) end
redis.call('DEL', KEYS[1])
return 0
"""
