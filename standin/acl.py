"""Redis ACL users of stand-in, derived from the code's key layout: `authgw standin acl` prints them.

Each role may run exactly the commands its code sends, on exactly the key families it
touches (keys.py, settlement/keys.py), the Lua scripts' inner calls included: Redis checks
every `redis.call` of a script against the calling user. The rules use Redis 7.0
selectors, one per key family: `(%R~authgw:{*}:status +get)` lets the gateway read card
statuses and nothing else on them.

    role      who                                         what on which keys
    gateway   a gateway's stand-in engine (and its        card records, windows, reversals, the
              settlement worker without [redis.settle])   journal's appends; card statuses READ only
    settle    every settlement worker ([redis.settle])    read and acknowledge the journal, dead
                                                          letters (append only), leases, settled
                                                          records, counts, heartbeats; no card key
                                                          but the unadvised counter, no XADD to the
                                                          journal
    operator  `authgw standin ...` ([redis.operator])     the gateway's rules (status and replay run
                                                          an engine), plus: card statuses WRITE
                                                          (load-card-status), putting dead letters
                                                          back (replay --dead-letters), reading
                                                          settlement's keys, SCAN (reconcile)

Scripts. Stand-in runs its Lua with EVALSHA, loading a script with SCRIPT LOAD the first
time Redis answers NOSCRIPT (redis-py's `register_script`). Both are granted; EVAL,
FUNCTION and every other SCRIPT subcommand (FLUSH, KILL) are not. Why SCRIPT LOAD is no
escalation: a script runs with its caller's rules (each inner command is checked), it is
addressed by the SHA1 of its own text (no user can replace another's), and Redis's script
cache is volatile (not persisted, lost on restart and failover), so loading by an operator
ahead of time would turn every Redis restart into NOSCRIPT errors until someone reloads.
FUNCTION LOAD is the one to refuse: functions persist, replicate and are shared by every
user, so a user that may load them could replace code another user then runs.
EVALSHA needs read-write access to the keys a script declares (Redis's key spec for
EVAL), so one selector grants EVALSHA on every key family a role's scripts declare; what
the script may then do with each key is the key family's own selector.

SCAN cannot be limited to key patterns by an ACL (it lists every key name), so only the
operator has it (`reconcile` lists settled buckets). Key names carry card tokens, never PANs.

Redis Cluster (`--cluster`, for issue 18): redis-py 8.1's cluster client also sends CLUSTER
SLOTS (its slot map) and COMMAND / COMMAND GETKEYS (key positions) before anything else, READONLY
when it reads from replicas and ASKING while a slot migrates; every key family already carries
its hash tag, so the key rules do not change. (redis_io.cluster_client gives that client our
TLS context, as redis_secure.py does for one Redis.) WAIT follows every decision and journal
write (redis_durable.py), so the gateway and operator users have it.

The `default` user is switched off and has no password: with TLS required, every certificate
of the fleet's CA reaches Redis, and an open `default` would give any of them every command.
It keeps every *permission*, though: Redis replays the AOF's transactions as `default` and,
until redis/redis#14545 (not in Debian's 7.0), re-checks that user's ACL at EXEC
(redis/redis#14541), and every script's effects are written to the AOF as a MULTI/EXEC. With
`default off -@all` a restart silently drops every journaled decision: the chaos experiment
redis-down over TLS showed it (494 stand-in decisions never advised);
tests/test_standin_redis_security.py keeps it from coming back. An `off` user cannot log in,
whatever its permissions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from standin import keys
from standin.redis_config import RedisRole
from standin.settlement import keys as skeys
from standin.types import LimitKind

__all__ = ["DEFAULT_USER", "ROLE_GRANTS", "Grant", "acl_line", "acl_lines", "rules_for"]

_T = "\x00"  # stands for any card token, acquirer id or request id in a key
_P = 987_654_321  # stands for any partition or day


def _glob(key: str) -> str:
    """A key of keys.py with its variable parts as `*` (the literal parts hold no glob character)."""
    return key.replace(_T, "*").replace(str(_P), "*")


STATUS = _glob(keys.card_status_key(_T))
REQUEST = _glob(keys.idempotency_key(_T, _T, _T))
REVERSAL = _glob(keys.reversal_key(_T, _T, _T))
REVERSAL_HOLD = _glob(keys.reversal_hold_key(_T, _T, _T))
SPEND = _glob(keys.spend_key(_T, LimitKind.PURCHASE).replace(LimitKind.PURCHASE.value, _T))
UNADVISED = _glob(keys.unadvised_key(_T))
BALANCE = _glob(keys.balance_key(_T))
STATUS_INDEX = keys.CARD_STATUS_INDEX
BUDGET = _glob(keys.budget_keys(_T, _P)[0]).replace(":spend", ":*")  # the set and its sum
VELOCITY = "authgw:{vel:*}:*"  # keys.velocity_tag: a digest in the tag, terminals' keys beside it
JOURNAL = _glob(keys.stream_key(_P))
SEEN = _glob(keys.dedupe_key(_P, _T))
DEAD = _glob(keys.dead_key(_P))
LEASE = _glob(skeys.lease_key(_P))
SETTLED = _glob(skeys.settled_key(_P, _P))
COUNTS = _glob(skeys.counts_key(_P))
WORKERS = skeys.WORKERS_KEY


@dataclass(frozen=True, slots=True)
class Grant:
    """Commands allowed on one key family: one ACL selector."""

    key: str
    """Glob of the key family."""
    commands: frozenset[str]
    """Lower case; a subcommand as `xgroup|create`."""
    access: str = "~"
    """`~` read-write, `%R~` read only, `%W~` write only."""
    scripted: bool = False
    """A Lua script declares these keys: EVALSHA must reach them (read-write, in one selector)."""


def _g(key: str, commands: str, access: str = "~", *, scripted: bool = False) -> Grant:
    return Grant(key, frozenset(commands.split()), access, scripted)


_STANDIN = (
    # lua.DECIDE / ABSORB / REVERSE / APPEND / UNADVISED_ADD, the journal's groups and depth (journal.py),
    # card statuses synced into the local journal (cardstatus.py: HSCAN of the index).
    _g(STATUS, "get", "%R~", scripted=True),
    _g(REQUEST, "hmget hset pexpire", scripted=True),
    _g(REVERSAL, "hmget hset pexpire", scripted=True),
    _g(REVERSAL_HOLD, "exists get set", scripted=True),
    _g(SPEND, "zremrangebyscore zrange zadd zrem zscore pttl pexpire", scripted=True),
    _g(UNADVISED, "get incr pexpire", scripted=True),
    _g(BALANCE, "hmget hset hincrby pexpire", scripted=True),  # lua.BALANCE_SET, DECIDE's cap
    # lua_risk.py: the exposure budgets' shards and the velocity windows (sets and their sums)
    _g(BUDGET, "zrangebyscore zrem zcard zscore zadd get incrby decrby del pexpire", scripted=True),
    _g(VELOCITY, "zrangebyscore zrem zcard zscore zadd get incrby decrby del pexpire", scripted=True),
    _g(STATUS_INDEX, "hscan", "%R~"),
    _g(JOURNAL, "xadd xgroup|create xlen xrange xpending", scripted=True),
    _g(SEEN, "get set", scripted=True),
    _g(DEAD, "xlen", "%R~"),
)
_SETTLE = (
    # settlement/store.py (READ, SETTLE, SETTLED_LOOKUP, DEAD scripts, blocking XREADGROUP,
    # consumer pruning, heartbeats), lease.py, counters.UNADVISED_DONE.
    _g(
        JOURNAL,
        "xautoclaim xreadgroup xack xdel xgroup|create xgroup|delconsumer xinfo|consumers",
        scripted=True,
    ),
    _g(DEAD, "xadd", "%W~", scripted=True),
    _g(LEASE, "get set pexpire del", scripted=True),
    _g(SETTLED, "hexists hsetnx pttl pexpire", scripted=True),
    _g(COUNTS, "hincrby", scripted=True),
    _g(WORKERS, "hset hgetall hdel"),
    _g(UNADVISED, "get decr del", scripted=True),
)
_OPERATOR = (
    # cli.py: load-card-status (pipelined SET/DEL and HSET/HDEL), status (settlement/status.py),
    # reconcile (SCAN of settled buckets), replay --dead-letters (deadletter.REQUEUE).
    _g(STATUS, "set del"),
    _g(STATUS_INDEX, "hset hdel"),
    _g(JOURNAL, "xadd xrange xrevrange xlen xpending", scripted=True),
    _g(DEAD, "xrange xlen xdel", scripted=True),
    _g(LEASE, "get", "%R~"),
    _g(SETTLED, "hgetall", "%R~"),
    _g(COUNTS, "hgetall", "%R~"),
    _g(WORKERS, "hgetall", "%R~"),
)
_KEYLESS = {
    # TIME: lua._NOW; WAIT: after each decision and journal write (redis_durable.py)
    RedisRole.GATEWAY: ("ping", "time", "script|load", "wait"),
    RedisRole.SETTLE: ("ping", "script|load"),
    RedisRole.OPERATOR: ("ping", "time", "script|load", "scan", "wait"),
}
DEFAULT_USER = "user default off resetpass ~* &* +@all"
"""No login as `default` (off, no password), every permission for the AOF replay (see above)."""

_CLUSTER = ("cluster|slots", "command", "readonly", "asking")

ROLE_GRANTS: Mapping[RedisRole, tuple[Grant, ...]] = {
    RedisRole.GATEWAY: _STANDIN,
    RedisRole.SETTLE: _SETTLE,
    RedisRole.OPERATOR: _STANDIN + _OPERATOR,
}
"""What each role's own code needs (a gateway without [redis.settle] adds settle's)."""


def rules_for(grants: Iterable[Grant], keyless: Sequence[str], *, select: bool, cluster: bool) -> str:
    """The ACL rules (after `on #<hash>`) for `grants`: keyless commands at the root, one selector each."""
    merged: dict[tuple[str, str], set[str]] = {}
    scripted: list[str] = []
    for g in grants:
        merged.setdefault((g.key, g.access), set()).update(g.commands)
        if g.scripted and g.key not in scripted:
            scripted.append(g.key)
    root = [*keyless, *(["select"] if select else []), *(_CLUSTER if cluster else ())]
    parts = ["resetkeys", "resetchannels", "-@all", *(f"+{c}" for c in root)]
    if scripted:
        parts.append("(" + " ".join([*(f"~{k}" for k in scripted), "+evalsha"]) + ")")
    for (key, access), commands in merged.items():
        parts.append("(" + " ".join([f"{access}{key}", *(f"+{c}" for c in sorted(commands))]) + ")")
    return " ".join(parts)


def acl_line(username: str, password: str, rules: str) -> str:
    """One ACL file line: the user on, its password as a SHA-256 (never in clear), its rules."""
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    return f"user {username} on #{digest} {rules}"


def acl_lines(
    users: Mapping[RedisRole, tuple[str, str]], *, select: bool = False, cluster: bool = False
) -> list[str]:
    """The ACL file for `users` (role -> (username, password)), `default` switched off first (DEFAULT_USER).

    Without a settle user the gateway's line also carries settlement's rules (its worker then
    logs in as the gateway). `select`: the URL names a database other than 0.
    """
    lines = [DEFAULT_USER]
    for role, (username, password) in users.items():
        grants = ROLE_GRANTS[role]
        keyless = _KEYLESS[role]
        if role is RedisRole.GATEWAY and RedisRole.SETTLE not in users:
            grants += _SETTLE
        lines.append(acl_line(username, password, rules_for(grants, keyless, select=select, cluster=cluster)))
    return lines
