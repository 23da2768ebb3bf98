"""The live stand-in policy in etcd under auth: dual control, audit of both identities, engines follow.

etcd as test_health_etcd_auth sets it up (TLS, client certificates, `auth enable`, operators
operator and operator2, gateways gw-1 and gw-2); two stand-in engines on the session Redis
stand for two gateways, each following the key with its own gateway certificate.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import test_health_etcd_auth as auth
from helpers import PAN_MC, PAN_VISA, assert_eventually
from test_standin_policy_live import purchase_limit
from test_standin_support import client, engine, request, stream_entries

from authgw.audit import AuditRecord
from authgw.security import TlsFiles, TransportSecurity
from chaos.pki import DevPki
from chaos.processes import ManagedProcess, free_port, start_etcd
from gateway import policy_cmd
from gateway.policy_store import PolicyRecord, digest, parse_record
from gateway.policy_watch import PolicyWatch
from health.endpoints import Endpoint
from health.errors import EtcdPermissionDenied
from health.etcd import EtcdClient
from health.keys import KeyLayout
from standin import Reason, StandIn

# etcd with auth, set up as test_health_etcd_auth does (its module fixtures, one etcd per module here)
pki = auth.pki
etcd = auth.etcd
first_setup = auth.first_setup
connect = auth.connect
etcd_flags = auth.etcd_flags
client_of = auth.client_of

LAYOUT = KeyLayout()
KEY = LAYOUT.standin_policy()


def proposal_id(out: str) -> str:
    found = re.search(r"proposal (\S+)", out)
    assert found, out
    return found.group(1)


@dataclass
class Operators:
    """Runs `authgw standin policy` as an operator's certificate; etcd's root reads what it wrote."""

    etcd: ManagedProcess
    pki: DevPki
    capsys: pytest.CaptureFixture[str]
    root: EtcdClient
    files: Path

    async def run(self, leaf: str, *argv: str) -> tuple[int, str, str]:
        """One command in a thread (it runs its own loop): exit status, stdout, stderr."""
        self.capsys.readouterr()
        code = await asyncio.to_thread(policy_cmd.main, [*argv, *etcd_flags(self.etcd, self.pki, leaf)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def file(self, text: str) -> str:
        path = self.files / f"policy-{len(list(self.files.iterdir()))}.toml"
        path.write_text(text)
        return str(path)

    async def propose(self, leaf: str, text: str) -> str:
        code, out, err = await self.run(leaf, "propose", self.file(text))
        assert code == 0, err
        return proposal_id(out)


@pytest.fixture
def ops(
    connect: dict[str, EtcdClient],
    etcd: ManagedProcess,
    pki: DevPki,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Operators:
    (tmp_path / "files").mkdir()
    return Operators(etcd, pki, capsys, connect["etcd-root"], tmp_path / "files")


async def live_version(root: EtcdClient) -> int:
    kv = await root.get(KEY)
    return 0 if kv is None else parse_record(kv.value, KEY).version


async def audit_records(root: EtcdClient) -> list[AuditRecord]:
    result = await root.get_prefix(LAYOUT.audit_prefix)
    return sorted((AuditRecord.from_json(kv.value) for kv in result.kvs), key=lambda r: r.record_id)


@pytest.fixture
async def gateways(
    etcd: ManagedProcess, pki: DevPki, first_setup: str, redis_port: int, tmp_path: Path
) -> AsyncIterator[list[StandIn]]:
    """Two engines, each following the live policy with its own gateway certificate (gw-1, gw-2)."""
    async with AsyncExitStack() as stack:
        engines = []
        for n in (1, 2):
            e = await stack.enter_async_context(
                engine(redis_port, tmp_path / f"gw-{n}.sqlite3", instance=f"gw-{n}")
            )
            etcd_client = client_of(etcd, pki, f"gateway-client-gw-{n}")
            stack.push_async_callback(etcd_client.close)
            watch = PolicyWatch(etcd_client, KEY, e.live_policy, retry_s=0.2)
            await watch.start()
            stack.push_async_callback(watch.close)
            engines.append(e)
        yield engines


async def test_approved_by_another_operator_every_engine_declines_above_the_new_limit(
    gateways: list[StandIn], ops: Operators, redis_port: int
) -> None:
    """operator proposes a 2,000 purchase window, operator2 approves: both engines decide under it."""
    version = await live_version(ops.root) + 1
    pid = await ops.propose("operator", purchase_limit(2_000))
    code, out, err = await ops.run("operator2", "approve", pid)
    assert code == 0, err
    assert f"version {version} live" in out

    def applied() -> None:
        assert [e.live_policy.version for e in gateways] == [version, version]

    await assert_eventually(applied, timeout_s=5.0)
    decisions = [
        await e.decide(request(pan, amount_minor=2_500), Reason.FORCED)
        for e, pan in zip(gateways, (PAN_VISA, PAN_MC), strict=True)
    ]
    assert [(d.rule, d.policy_version) for d in decisions] == [("limit.amount.purchase", version)] * 2
    r = client(redis_port)
    try:
        entries = await stream_entries(r)
    finally:
        await r.aclose()
    assert [(x["gateway_instance"], x["policy_version"]) for x in entries] == [
        ("gw-1", str(version)),
        ("gw-2", str(version)),
    ]
    proposed, approved = [r for r in await audit_records(ops.root) if r.details.get("proposal") == pid]
    assert (proposed.action, proposed.identity.name, proposed.details["proposed_by"]) == (
        "standin.policy.propose", "operator", "operator",
    )  # fmt: skip
    assert (approved.action, approved.identity.name, approved.target) == (
        "standin.policy.approve", "operator2", KEY,
    )  # fmt: skip
    assert (approved.details["proposed_by"], approved.details["approved_by"]) == ("operator", "operator2")
    assert approved.details["version"] == version


async def test_the_proposer_cannot_approve_their_own_proposal(ops: Operators) -> None:
    """operator approving its own proposal: exit 1 naming dual control; no version, no approval record."""
    before = (await live_version(ops.root), await audit_records(ops.root))
    pid = await ops.propose("operator", purchase_limit(1_500))
    code, _, err = await ops.run("operator", "approve", pid)
    assert code == 1
    assert "dual control needs another operator" in err
    assert await live_version(ops.root) == before[0]
    new = [r.action for r in await audit_records(ops.root) if r not in before[1]]
    assert new == ["standin.policy.propose"]


async def test_an_invalid_policy_is_refused_naming_the_file_key_and_fix(ops: Operators) -> None:
    """propose of an unknown MCC group: exit 2 naming the file, the key and the fix; nothing stored."""
    before = await ops.root.get_prefix(LAYOUT.policy_proposals_prefix)
    file = ops.file("[policy]\nblocked_mcc_groups = ['casino']\n")
    code, _, err = await ops.run("operator", "propose", file)
    assert code == 2
    assert f"{file}: policy.blocked_mcc_groups: unknown MCC group 'casino'; fix: define it" in err
    assert (await ops.root.get_prefix(LAYOUT.policy_proposals_prefix)).kvs == before.kvs


async def test_an_invalid_live_value_keeps_every_engines_policy(
    gateways: list[StandIn], connect: dict[str, EtcdClient]
) -> None:
    """Invalid values written around the commands (by root): engines keep their version, count each."""
    root = connect["etcd-root"]
    kv = await root.get(KEY)
    version = await live_version(root)
    assert [e.live_policy.version for e in gateways] == [version] * 2
    record = (
        b'{"version": %d, "policy": "[policy]\\nwindow_length = \\"1h\\"\\n", "sha256": "", "proposal": "x",'
    )
    record += b' "proposed_by": "root", "approved_by": "root", "approved_at": ""}'
    try:
        for n, bad in enumerate(
            [b'{"version": 999}', record % (version + 1)], start=1
        ):  # no record; bad window
            await root.put(KEY, bad)

            def refused(n: int = n) -> None:
                assert [e.live_policy.rejected for e in gateways] == [n, n]

            await assert_eventually(refused, timeout_s=5.0)
        assert [e.live_policy.version for e in gateways] == [version] * 2
    finally:
        if kv is None:
            await root.delete(KEY)
        else:
            await root.put(KEY, kv.value)


async def test_rollback_is_a_proposal_another_operator_approves(
    gateways: list[StandIn], ops: Operators
) -> None:
    """Two versions, rollback to the first (operator2 proposes, operator approves): new version, old text."""
    texts = [purchase_limit(3_000), purchase_limit(4_000)]
    versions = []
    for text in texts:
        code, _, err = await ops.run("operator2", "approve", await ops.propose("operator", text))
        assert code == 0, err
        versions.append(await live_version(ops.root))
    code, out, _ = await ops.run("operator2", "rollback", str(versions[0]))
    assert code == 0
    assert await live_version(ops.root) == versions[1]  # nothing changes before the approval
    code, _, err = await ops.run("operator", "approve", proposal_id(out))
    assert code == 0, err
    kv = await ops.root.get(KEY)
    assert kv is not None
    record = parse_record(kv.value, KEY)
    assert (record.version, record.policy, record.rollback_of) == (versions[1] + 1, texts[0], versions[0])
    assert (record.proposed_by, record.approved_by) == ("operator2", "operator")

    def applied() -> None:
        assert [e.live_policy.current.policy.purchase.max_amount_minor for e in gateways] == [3_000, 3_000]

    await assert_eventually(applied, timeout_s=5.0)
    code, out, _ = await ops.run("operator", "history")
    assert code == 0
    assert f"version {record.version}" in out and f"rollback of {versions[0]}" in out


async def test_a_stale_proposal_is_refused(ops: Operators) -> None:
    """Two proposals against one version: the second approval is refused (its diff is stale)."""
    first = await ops.propose("operator", purchase_limit(6_000))
    second = await ops.propose("operator", purchase_limit(6_000))
    assert (await ops.run("operator2", "approve", first))[0] == 0
    code, _, err = await ops.run("operator2", "approve", second)
    assert code == 1 and "propose again" in err
    code, _, err = await ops.run("operator2", "approve", first)
    assert code == 1 and "already approved" in err


async def test_etcd_roles_keep_proposals_to_their_proposer_and_the_key_from_gateways(
    connect: dict[str, EtcdClient],
) -> None:
    """operator may not write a proposal as operator2; a gateway reads the live key but may not write it."""
    with pytest.raises(EtcdPermissionDenied, match="'operator'"):
        await connect["operator"].put(LAYOUT.policy_proposal("operator2", "forged"), b"{}")
    gateway = connect["gateway-client-gw-1"]
    await gateway.get(KEY)
    with pytest.raises(EtcdPermissionDenied, match="'authgw-gateway-gw-1'"):
        await gateway.put(KEY, b"{}")


def tls_client(pki: DevPki, port: int, leaf: str, timeout_s: float = 0.5) -> EtcdClient:
    f = pki.files(leaf)
    security = TransportSecurity.mutual_tls(TlsFiles(cert=f.cert, key=f.key, ca=f.ca))
    return EtcdClient([Endpoint("127.0.0.1", port, "https")], security=security, request_timeout_s=timeout_s)


async def test_etcd_unreachable_at_start_leaves_the_file_then_the_key_applies(
    pki: DevPki, redis_port: int, tmp_path: Path
) -> None:
    """No etcd at start: the engine decides under the file (v0); etcd comes up with a version: applied."""
    port = free_port()
    follower, writer = tls_client(pki, port, "gateway-client-gw-1"), tls_client(pki, port, "etcd-root", 5.0)
    async with engine(redis_port, tmp_path / "j.sqlite3") as e:
        watch = PolicyWatch(follower, KEY, e.live_policy, retry_s=0.2)
        late: ManagedProcess | None = None
        try:
            await watch.start()
            assert e.live_policy.version == 0
            d = await e.decide(request(PAN_VISA, amount_minor=2_500), Reason.FORCED)
            assert (d.approved, d.policy_version) == (True, 0)
            late = await asyncio.to_thread(
                start_etcd, tmp_path / "etcd", client_port=port, tls=pki.files("etcd"), client_cert_auth=True
            )
            text = purchase_limit(2_000)
            await writer.put(KEY, PolicyRecord(4, text, digest(text), "p", "alice", "bob", "").to_json())

            def applied() -> None:
                assert e.live_policy.version == 4

            await assert_eventually(applied, timeout_s=10.0)
            d = await e.decide(request(PAN_MC, amount_minor=2_500), Reason.FORCED)
            assert (d.approved, d.policy_version) == (False, 4)
        finally:
            await watch.close()
            await follower.close()
            await writer.close()
            if late is not None:
                await asyncio.to_thread(late.stop)


async def test_a_deleted_key_sends_engines_to_the_file_and_versions_never_repeat(
    gateways: list[StandIn], ops: Operators
) -> None:
    """root deletes the live key: engines back on version 0; the next approval is a new number, applied."""
    pid = await ops.propose("operator", purchase_limit(7_000))
    assert (await ops.run("operator2", "approve", pid))[0] == 0
    version = await live_version(ops.root)
    await ops.root.delete(KEY)

    def on_file() -> None:
        assert [e.live_policy.version for e in gateways] == [0, 0]

    await assert_eventually(on_file, timeout_s=5.0)
    pid = await ops.propose("operator2", purchase_limit(8_000))
    code, out, err = await ops.run("operator", "approve", pid)
    assert code == 0, err
    assert f"version {version + 1} live" in out

    def applied() -> None:
        assert [e.live_policy.version for e in gateways] == [version + 1] * 2

    await assert_eventually(applied, timeout_s=5.0)


async def test_a_value_written_around_the_commands_is_flagged_by_show(
    gateways: list[StandIn], ops: Operators
) -> None:
    """root writes a valid record itself: gateways cannot tell, apply it; `show` warns: not in the history."""
    pid = await ops.propose("operator", purchase_limit(6_500))  # a live approved version of its own
    assert (await ops.run("operator2", "approve", pid))[0] == 0  # (not left by an earlier test)
    kv = await ops.root.get(KEY)
    assert kv is not None
    record = parse_record(kv.value, KEY)
    forged = replace(
        record, version=record.version + 50, approved_by="operator2", policy=purchase_limit(9_000)
    )
    try:
        await ops.root.put(KEY, forged.to_json())

        def applied() -> None:
            assert [e.live_policy.version for e in gateways] == [forged.version] * 2

        await assert_eventually(applied, timeout_s=5.0)
        code, _, err = await ops.run("operator", "show")
        assert code == 0
        assert f"WARNING: live version {forged.version} is not the approved version" in err
    finally:
        await ops.root.put(KEY, kv.value)

    def restored() -> None:  # the key is the truth: a lower version written back is applied too
        assert [e.live_policy.version for e in gateways] == [record.version] * 2

    await assert_eventually(restored, timeout_s=5.0)
    code, _, err = await ops.run("operator", "show")
    assert (code, err) == (0, "")


async def test_diff_shows_what_a_file_changes_against_the_live_version(ops: Operators) -> None:
    """diff prints the unified diff against the live text; show --json lists the proposal waiting."""
    pid = await ops.propose("operator", purchase_limit(11_000))
    assert (await ops.run("operator2", "approve", pid))[0] == 0
    version = await live_version(ops.root)
    code, out, _ = await ops.run("operator", "diff", ops.file(purchase_limit(12_000)))
    assert code == 0
    assert f"--- live version {version}" in out
    assert "-max_amount_minor = 11000\n+max_amount_minor = 12000\n" in out
    waiting = await ops.propose("operator", purchase_limit(12_000))
    code, out, _ = await ops.run("operator2", "show", "--json")
    shown = json.loads(out)
    assert shown["live"]["version"] == version and shown["unrecorded"] == ""
    assert waiting in [p["proposal_id"] for p in shown["pending"]]


async def test_over_plaintext_etcd_nobody_can_propose(
    etcd_server: ManagedProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--etcd-insecure: no certificate says who proposes: propose refused (exit 1), nothing written."""
    file = tmp_path / "p.toml"
    file.write_text(purchase_limit(2_000))
    flags = [
        "--etcd",
        f"http://127.0.0.1:{etcd_server.port}",
        "--etcd-insecure",
        "--key-root",
        "/policy-plain",
    ]
    code = await asyncio.to_thread(policy_cmd.main, ["propose", str(file), *flags])
    assert code == 1
    assert "need the operator's etcd client certificate" in capsys.readouterr().err
    plain = EtcdClient([Endpoint("127.0.0.1", etcd_server.port, "http")])
    try:
        assert (await plain.get_prefix(KeyLayout("/policy-plain").policy_prefix)).kvs == ()
    finally:
        await plain.close()
    code = await asyncio.to_thread(policy_cmd.main, ["show", *flags])
    assert code == 0
    assert "no live policy in etcd" in capsys.readouterr().out
