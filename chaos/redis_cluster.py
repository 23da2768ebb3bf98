"""A local Redis Cluster of 3 masters and 3 replicas, started and stopped by PID.

    cluster = start_redis_cluster(workdir, users=users)   # users: TLS + ACL (None: plaintext)
    cluster.url              # the seed node's redis:// or rediss:// URL (the others are found)
    cluster.masters()        # {port: slots owned}, as CLUSTER NODES says now
    cluster.replica_of(port) # the ManagedProcess replicating a master
    cluster.stop()

Six `redis-server --cluster-enabled yes` (AOF, fsync always) joined by `redis-cli --cluster
create ... --cluster-replicas 1 --cluster-yes`; over TLS the bus and replication use TLS too
(start_redis) and the replicas log in to their master as the harness admin. A short
cluster-node-timeout (1000 ms by default) lets a replica be promoted about a second after its
master dies. Admin commands go through redis-cli as the harness admin: set-up code, blocking.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaos.processes import ManagedProcess, ProcessError, free_port, start_redis
from chaos.redis_users import ADMIN, RedisUsers

__all__ = ["LocalCluster", "start_redis_cluster"]


@dataclass
class LocalCluster:
    """The six nodes and how to talk to them as an administrator."""

    nodes: list[ManagedProcess]
    users: RedisUsers | None = None
    node_timeout_ms: int = 1000
    _cli: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The first live node's URL: a seed node for RedisSettings (cluster = true)."""
        port = next(n.port for n in self.nodes if n.alive())
        return RedisUsers.url(port) if self.users is not None else f"redis://127.0.0.1:{port}/0"

    def cli(self, port: int, *args: str, timeout_s: float = 20.0) -> str:
        """redis-cli as the harness admin against one node; its output (ProcessError on failure)."""
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *self._cli, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0 or done.stdout.startswith(("ERR", "NOAUTH", "WRONGPASS")):
            raise ProcessError(f"redis-cli {' '.join(args)} on {port}: {done.stdout}{done.stderr}")
        return done.stdout

    def topology(self) -> list[tuple[int, str, int]]:
        """(port, role, slots owned) of every node a live node knows, per CLUSTER NODES."""
        port = next(n.port for n in self.nodes if n.alive())
        out: list[tuple[int, str, int]] = []
        for line in self.cli(port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) < 8 or "fail" in parts[2]:
                continue
            node_port = int(parts[1].split("@", 1)[0].rsplit(":", 1)[1])
            role = "master" if "master" in parts[2] else "replica"
            slots = sum(_slot_count(s) for s in parts[8:])
            out.append((node_port, role, slots))
        return out

    def masters(self) -> dict[int, int]:
        """{port: slots} of the masters owning slots now."""
        return {port: slots for port, role, slots in self.topology() if role == "master" and slots}

    def owner_of(self, slot: int) -> int:
        """The port of the master owning `slot` now."""
        port = next(n.port for n in self.nodes if n.alive())
        for line in self.cli(port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) < 9 or "master" not in parts[2] or "fail" in parts[2]:
                continue
            for spec in parts[8:]:
                low, _, high = spec.partition("-")
                if not spec.startswith("[") and int(low) <= slot <= int(high or low):
                    return int(parts[1].split("@", 1)[0].rsplit(":", 1)[1])
        raise ProcessError(f"no master owns slot {slot}")

    def node(self, port: int) -> ManagedProcess:
        return next(n for n in self.nodes if n.port == port)

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node says cluster_state:ok and each of 3 masters has a synced replica."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._healthy():
                    return
            except (ProcessError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise ProcessError(f"Redis Cluster not healthy within {timeout_s}s: {self.topology()}")
            time.sleep(0.1)

    def wait_acked(self, timeout_s: float = 10.0) -> None:
        """Until every master's replica has acknowledged all its writes (replicas ack once a second)."""
        deadline = time.monotonic() + timeout_s
        while not all(_acked(self.cli(port, "INFO", "replication")) for port in self.masters()):
            if time.monotonic() > deadline:
                raise ProcessError(f"replicas did not catch up within {timeout_s}s")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        live = [n for n in self.nodes if n.alive()]
        if not all("cluster_state:ok" in self.cli(n.port, "CLUSTER", "INFO") for n in live):
            return False
        masters = self.masters()
        if len(masters) != 3:
            return False
        return all(_synced_replicas(self.cli(port, "INFO", "replication")) >= 1 for port in masters)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _slot_count(spec: str) -> int:
    if spec.startswith("["):  # a slot being migrated
        return 0
    low, _, high = spec.partition("-")
    return int(high or low) - int(low) + 1


def _acked(info: str) -> bool:
    """A master's INFO replication: its online replica's acknowledged offset is the master's own."""
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    own = fields.get("master_repl_offset", "").strip()
    replicas = [v for k, v in fields.items() if k.startswith("slave") and "state=online" in v]
    return bool(replicas) and all(f"offset={own}," in v for v in replicas)


def _synced_replicas(info: str) -> int:
    return sum(1 for line in info.splitlines() if line.startswith("slave") and "state=online" in line)


def start_redis_cluster(
    workdir: Path, *, users: RedisUsers | None = None, node_timeout_ms: int = 1000
) -> LocalCluster:
    """Start six nodes, join them as 3 masters + 3 replicas, wait until healthy (stops them on failure)."""
    extra: tuple[str, ...] = ("--cluster-node-timeout", str(node_timeout_ms))
    cli: list[str] = []
    tls = None
    aclfile = None
    if users is not None:
        tls = users.server_files()
        aclfile = users.write_aclfile(cluster=True)
        password = users.passwords[ADMIN]
        extra += ("--masteruser", ADMIN, "--masterauth", password)
        admin = users.pki.files("operator")
        cli = ["--tls", "--cacert", str(admin.ca), "--cert", str(admin.cert), "--key", str(admin.key)]
        cli += ["--user", ADMIN, "--pass", password, "--no-auth-warning"]
    nodes: list[ManagedProcess] = []
    cluster = LocalCluster(nodes, users, node_timeout_ms, cli)
    try:
        for i in range(6):
            port = free_port()
            nodes.append(
                start_redis(
                    workdir / f"node-{i}", port, cluster=True, extra_args=extra, tls=tls, aclfile=aclfile
                )
            )
        addresses = [n.address for n in nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        cluster.cli(nodes[0].port, *create)
        cluster.wait_ok()
    except BaseException:
        cluster.stop()
        raise
    return cluster
