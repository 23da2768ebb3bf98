"""One Redis or a Redis Cluster behind one interface, and WAIT on the write's own connection.

    client = make_redis_client(settings)         # redis_io.py: Redis, or RedisCluster with `cluster`
    gate = RedisGate(client, deadline, durability=settings.durability)
    decide = gate.script(lua.DECIDE)             # a DurableScript
    await gate.call("decide", lambda: decide(keys=[...], args=[...]))

A DurableScript runs where its first key lives (every key of a script shares its hash tag,
keys.py): on one Redis, a connection of its pool; on a Cluster, a connection of the master
owning the key's slot (the client's slot map). With `durability.replicas` > 0 the EVALSHA
and a `WAIT replicas timeout` are written together on that same connection (one round trip:
Redis runs them in order) and the connection goes back to its pool only after both replies.
WAIT counts the writes of its own connection only and cannot run inside a script, which is
why it cannot be a plain `client.wait()` (another pooled connection proves nothing).

WAIT answering fewer replicas than asked raises NotReplicatedError, a RedisError that may have
been applied: the engine treats it as a lost reply (DECIDE: a 91 recorded locally; APPEND:
the decision recorded in the local journal), so no approval is answered on a record that
lives on one master only. A script that wrote nothing (a repeat) is also followed by WAIT: it
then waits for the connection's last write, which is already replicated or was refused.

Why not redis-py's own Script/EVALSHA: on a Cluster its pipeline refuses EVALSHA, and its
single-command path gives no hold on the connection WAIT must follow.

A Cluster's slot map is read again (CLUSTER SLOTS from the seed nodes) after a MOVED, a
CLUSTERDOWN, or a connection error, so a promoted replica is found by the next call.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = [
    "Durability",
    "DurableScript",
    "NotReplicatedError",
    "RedisClient",
    "ScriptRunner",
    "execute_on_key_node",
]

log = logging.getLogger("standin.redis")

RedisClient = Redis | RedisCluster
"""What stand-in and settlement hold: one Redis, or a Redis Cluster (`[redis] cluster = true`)."""

_SLOT_MAP_STALE = (MovedError, ClusterDownError, TryAgainError, RedisConnectionError)


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must hold a write before the gateway answers on it."""

    replicas: int = 0
    """WAIT's numreplicas; 0 = no WAIT (one Redis without replicas)."""
    timeout: timedelta = timedelta(milliseconds=50)
    """WAIT's timeout: past it the write counts as not durable."""


class NotReplicatedError(RedisError):
    """WAIT answered fewer replicas than asked: the write is on its master only (it may be lost)."""


class DurableScript:
    """A Lua script, called like redis-py's AsyncScript: `await script(keys=[...], args=[...])`."""

    def __init__(self, runner: ScriptRunner, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self._runner = runner

    async def __call__(self, *, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        return await self._runner.run(self, keys, args)


class ScriptRunner:
    """Runs scripts on the connection that owns their first key, each followed by WAIT when asked."""

    def __init__(self, client: RedisClient, durability: Durability) -> None:
        self.client = client
        self.durability = durability

    def script(self, source: str) -> DurableScript:
        return DurableScript(self, source)

    async def run(self, script: DurableScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """EVALSHA (SCRIPT LOAD first if a node says NOSCRIPT), then WAIT; one retry on a stale socket."""
        try:
            return await self._run_once(script, keys, args)
        except _SLOT_MAP_STALE as exc:
            # A pooled socket left by a restart, or a failover: a fresh connection (and on a
            # Cluster a fresh slot map) may work. Safe: every script is idempotent.
            log.info("redis script retried after %s: %s", type(exc).__name__, exc)
            await self._refresh(keys[0])
            return await self._run_once(script, keys, args)

    async def _run_once(self, script: DurableScript, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        reply = await self._exchange(keys[0], ("EVALSHA", script.sha, len(keys), *keys, *args))
        if isinstance(reply, NoScriptError):  # SCRIPT LOAD on the key's node (our ACL users have no EVAL)
            loaded = await self._exchange(keys[0], ("SCRIPT", "LOAD", script.source), durable=False)
            if isinstance(loaded, Exception):
                raise loaded
            reply = await self._exchange(keys[0], ("EVALSHA", script.sha, len(keys), *keys, *args))
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _exchange(self, key: str, command: tuple[Any, ...], *, durable: bool = True) -> Any:
        """Send `command` (and WAIT) on one connection for `key`; its reply, or the ResponseError."""
        wait = self.durability
        commands: list[tuple[Any, ...]] = [command]
        if wait.replicas and durable:
            commands.append(("WAIT", wait.replicas, int(wait.timeout / timedelta(milliseconds=1))))
        async with self._connection(key) as conn:
            await conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    # No timeout= here: with one, redis-py answers None on a timeout and leaves
                    # the reply unread on a pooled connection; its socket timeout raises instead.
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # read in full: the connection stays usable
                    replies.append(exc)
        if len(replies) > 1 and not isinstance(replies[0], Exception):
            acked = replies[1]
            if isinstance(acked, Exception) or acked < wait.replicas:
                raise NotReplicatedError(
                    f"WAIT: {acked} of {wait.replicas} replica(s) within "
                    f"{wait.timeout.total_seconds() * 1000:.0f} ms"
                )
        return replies[0]

    @contextlib.asynccontextmanager
    async def _connection(self, key: str) -> AsyncIterator[AbstractConnection]:
        """A connection to the node owning `key`, held for the whole exchange.

        Dropped rather than pooled unless every reply was read (a cancel or a broken read
        would leave the next user reading our replies).
        """
        client = self.client
        if isinstance(client, RedisCluster):
            await client.initialize()
            node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
            conn: AbstractConnection = node.acquire_connection()
            try:
                async with _dropped_unless_finished(conn):
                    yield conn
            finally:
                node.release(conn)  # type: ignore[arg-type]
        else:
            pool = client.connection_pool
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                async with _dropped_unless_finished(conn):
                    yield conn
            finally:
                await pool.release(conn)

    async def _refresh(self, key: str) -> None:
        """On a Cluster: close the key's node's idle sockets (a restart or a kill left them all
        dead; one pool of a single Redis checks each socket it hands out, a Cluster node does not),
        then read the slot map again (a promoted replica, a moved slot)."""
        client = self.client
        if isinstance(client, RedisCluster):
            with contextlib.suppress(RedisError):
                node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
                await node.disconnect_free_connections()
            await client.nodes_manager.initialize()


async def execute_on_key_node(client: RedisClient, key: str, *command: str | int) -> Any:
    """`command` on the node owning `key`: on a Cluster, sent there directly (target_nodes).

    redis-py 8.1's cluster client finds the keys of a command it has no key position for
    (XREADGROUP, FCALL) with COMMAND GETKEYS, two round trips more per call; naming the node
    skips that. A stale slot map shows as MOVED or a connection error, after which the client
    reads the map again at its next call (as for the scripts, the caller retries).
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
        return await client.execute_command(*command, target_nodes=node)
    return await client.execute_command(*command)  # type: ignore[no-untyped-call]  # redis-py: untyped


@contextlib.asynccontextmanager
async def _dropped_unless_finished(conn: AbstractConnection) -> AsyncIterator[None]:
    finished = False
    try:
        yield
        finished = True
    finally:
        if not finished:
            await conn.disconnect(nowait=True)
