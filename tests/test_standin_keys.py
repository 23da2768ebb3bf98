"""PAN key rotation: entries sealed under a retired key are advised; a key dropped early is named.

Real Redis, real issuer simulators (their own ledger database), the gateway's gRPC advice
sender; a spy around the sender records which PAN each advice carried.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_eventually
from test_settlement_support import (
    FAST,
    assert_applied_exactly_once,
    dead_letters,
    new_pans,
    start_sims,
    stream_len,
    worker,
)
from test_standin_cli import authgw
from test_standin_support import IMPATIENT, PAN_KEY, client, engine, request

from chaos.processes import ManagedProcess, free_port
from chaos.sim_control import SimControl
from standin import (
    ConfigError,
    PanKeyring,
    Reason,
    StandInConfig,
    StandInDecision,
    UnknownPanKeyError,
    load_config,
)
from standin.redis_io import RedisGate
from standin.settings import JournalSettings
from standin.settlement import AdviceSender, Settlement
from standin.settlement.advice import Advice, ReversalAdvice, SendResult
from standin.settlement.deadletter import requeue
from standin.settlement.status import settlement_status
from standin.tokens import CardTokenizer

LEDGER_DB = 7  # this module's issuer ledger (test_settlement uses 5, test_settlement_cli 6)
KEY_A = PAN_KEY  # what the shared helpers seal with
KEY_B = bytes(range(200, 232))
A, B = PanKeyring.of(KEY_A), PanKeyring.of(KEY_B)
B_WITH_A_RETIRED = PanKeyring.of(KEY_B, [KEY_A])
ID_A, ID_B = A.key_id, B.key_id


@dataclass
class Spy:
    """Wraps the real sender: records the PAN of every advice it is asked to send."""

    inner: AdviceSender
    pans: dict[str, str] = field(default_factory=dict)

    async def send(self, advice: Advice, *, deadline: timedelta) -> SendResult:
        self.pans[advice.decision_id] = advice.request.pan
        return await self.inner.send(advice, deadline=deadline)

    async def reverse(self, advice: ReversalAdvice, *, deadline: timedelta) -> SendResult:
        return await self.inner.reverse(advice, deadline=deadline)


@pytest.fixture(scope="module")
def sims(
    tmp_path_factory: pytest.TempPathFactory, redis_server: ManagedProcess
) -> Iterator[dict[str, ManagedProcess]]:
    """Two issuer hosts (primary a1, secondary b1) sharing one ledger."""
    procs = start_sims(
        tmp_path_factory.mktemp("keys-sims"), f"redis://127.0.0.1:{redis_server.port}/{LEDGER_DB}"
    )
    yield procs
    for p in procs.values():
        p.stop()


async def decide(
    port: int, sqlite: Path, keyring: PanKeyring, pans: Iterable[str], **kw: object
) -> list[StandInDecision]:
    """One approved stand-in decision per PAN, sealed with `keyring`'s current key."""
    async with engine(port, sqlite, keyring=keyring, **kw) as e:  # type: ignore[arg-type]
        return [await e.decide(request(pan), Reason.ALL_POOLS_FAILED) for pan in pans]


async def settle(
    port: int, sims: dict[str, ManagedProcess], keyring: PanKeyring, until_settled: Sequence[StandInDecision]
) -> Spy:
    """Run a worker with `keyring` until `until_settled` are at the issuer and the journal is empty."""
    spies: list[Spy] = []

    def spy(sender: AdviceSender) -> AdviceSender:
        spies.append(Spy(sender))
        return spies[-1]

    async with worker(port, sims, keyring=keyring, spy=spy):
        r = client(port)

        async def drained() -> None:
            assert await stream_len(r) == 0
            async with SimControl(sims["a1"].address) as ctl:
                advised = {a.decision_id for a in (await ctl.report()).advices}
            assert {d.decision_id for d in until_settled} <= advised

        try:
            await assert_eventually(drained, timeout_s=15)
        finally:
            await r.aclose()
    return spies[0]


async def journal_key_ids(port: int) -> list[str]:
    r = client(port)
    try:
        return [f[b"pan_key_id"].decode() for _, f in await r.xrange("authgw:{journal:0}:decisions")]
    finally:
        await r.aclose()


async def pan_key_rows(port: int, keyring: PanKeyring, **kw: object) -> dict[str, dict[str, object]]:
    """The `pan_keys` rows of the settlement status, by key id."""
    r = client(port)
    try:
        status = await settlement_status(
            RedisGate(r, timedelta(seconds=5)),
            JournalSettings(),
            now_ms=0,
            keyring=keyring,
            **kw,  # type: ignore[arg-type]
        )
    finally:
        await r.aclose()
    return {row["key_id"]: row for row in status["pan_keys"]["keys"]}


async def test_rotation_advises_entries_of_the_old_and_the_new_key(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Decided under A, then under B with A retired: each entry names its key and is advised with its PAN."""
    pans_a, pans_b = new_pans(3), new_pans(3)
    before = await decide(redis_port, tmp_path / "l.db", A, pans_a)
    after = await decide(redis_port, tmp_path / "l.db", B_WITH_A_RETIRED, pans_b)
    assert await journal_key_ids(redis_port) == [ID_A] * 3 + [ID_B] * 3
    rows = await pan_key_rows(redis_port, B_WITH_A_RETIRED)
    assert (rows[ID_A]["role"], rows[ID_A]["journal"], rows[ID_A]["droppable"]) == ("retired", 3, False)
    assert (rows[ID_B]["role"], rows[ID_B]["journal"]) == ("current", 3)

    spy = await settle(redis_port, sims, B_WITH_A_RETIRED, before + after)

    expected = {d.decision_id: pan for d, pan in zip(before + after, pans_a + pans_b, strict=True)}
    assert spy.pans == expected
    await assert_applied_exactly_once(sims["a1"], before + after)
    r = client(redis_port)
    assert await dead_letters(r) == []
    await r.aclose()
    rows = await pan_key_rows(redis_port, B_WITH_A_RETIRED)
    assert (rows[ID_A]["journal"], rows[ID_A]["droppable"]) == (0, True)


async def test_a_key_dropped_too_early_dead_letters_its_entries_by_name_then_they_are_replayed(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Settling with B alone: A's entries are dead letters naming key A (no PAN); with A back, all settle."""
    pans_a, pans_b = new_pans(2), new_pans(2)
    under_a = await decide(redis_port, tmp_path / "l.db", A, pans_a)
    under_b = await decide(redis_port, tmp_path / "l.db", B, pans_b)

    spy = await settle(redis_port, sims, B, under_b)
    assert set(spy.pans) == {d.decision_id for d in under_b}
    r = client(redis_port)
    dead = await dead_letters(r)
    assert sorted(d["decision_id"] for d in dead) == sorted(d.decision_id for d in under_a)
    for letter in dead:
        assert ID_A in letter["dead_error"] and "not configured" in letter["dead_error"]
        assert not any(pan[6:-4] in letter["dead_error"] for pan in pans_a)
    rows = await pan_key_rows(redis_port, B)
    assert (rows[ID_A]["role"], rows[ID_A]["dead_letters"]) == ("not configured", 2)

    assert await requeue(RedisGate(r, timedelta(seconds=5)), 1) == 2
    await r.aclose()
    spy = await settle(redis_port, sims, B_WITH_A_RETIRED, under_a)
    assert spy.pans == {d.decision_id: pan for d, pan in zip(under_a, pans_a, strict=True)}
    await assert_applied_exactly_once(sims["a1"], under_a + under_b)


async def test_local_journal_entries_sealed_before_the_rotation_are_moved_and_advised(
    redis_port: int, sims: dict[str, ManagedProcess], tmp_path: Path
) -> None:
    """Decided locally under A (Redis away), moved by an engine rotated to B: advised with their PAN."""
    pans = new_pans(3)
    db = tmp_path / "gw.sqlite3"
    local = await decide(free_port(), db, A, pans, redis_settings=IMPATIENT)  # nothing listens there
    async with engine(redis_port, db, keyring=B_WITH_A_RETIRED) as e:
        assert (await e.status()).local_by_pan_key == {ID_A: 3}

        async def moved() -> None:
            assert (await e.status()).local_backlog == 0

        await assert_eventually(moved, timeout_s=10)
    assert await journal_key_ids(redis_port) == [ID_A] * 3
    spy = await settle(redis_port, sims, B_WITH_A_RETIRED, local)
    assert spy.pans == {d.decision_id: pan for d, pan in zip(local, pans, strict=True)}


async def test_superseded_local_entry_under_a_dropped_key_waits_in_the_local_journal(
    redis_port: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A local decision another one superseded needs its key to be re-sealed: without A it stays, logged."""
    [pan] = new_pans(1)
    db = tmp_path / "gw.sqlite3"
    req = request(pan)
    async with engine(free_port(), db, keyring=A, redis_settings=IMPATIENT) as e:
        first = await e.decide(req, Reason.ALL_POOLS_FAILED)  # local, Redis unreachable
    async with engine(redis_port, tmp_path / "other.sqlite3", keyring=B) as e:
        told_last = await e.decide(req, Reason.ALL_POOLS_FAILED)  # another gateway, through Redis
    assert first.decision_id != told_last.decision_id
    caplog.set_level(logging.ERROR, logger="standin.migrate")
    async with engine(redis_port, db, keyring=B) as e:
        assert await e.move_backlog() == 0
        assert (await e.status()).local_by_pan_key == {ID_A: 1}
    assert any(
        ID_A in rec.getMessage() and "stays in the local journal" in rec.getMessage()
        for rec in caplog.records
    )
    async with engine(redis_port, db, keyring=B_WITH_A_RETIRED) as e:
        assert await e.move_backlog() == 1
        assert (await e.status()).local_backlog == 0
    r = client(redis_port)
    entries = await r.xrange("authgw:{journal:0}:decisions")
    await r.aclose()
    assert [f[b"decision_id"].decode() for _, f in entries] == [told_last.decision_id]  # appended once


def _standin_toml(tmp_path: Path, port: int, keys: dict[str, object]) -> Path:
    path = tmp_path / "standin.toml"
    path.write_text(
        f'[standin]\ninstance = "gw-keys"\n[redis]\nurl = "redis://127.0.0.1:{port}/0"\ninsecure = true\n'
        f'[local]\nsqlite_path = "local.sqlite3"\n[keys]\n'
        + "".join(
            f"{k} = {json.dumps(v) if not isinstance(v, list) else _inline(v)}\n" for k, v in keys.items()
        )
    )
    return path


def _rotated_toml(tmp_path: Path, port: int) -> Path:
    """A stand-in file whose current PAN key is B, with A retired (keys inline: a test)."""
    b64 = base64.b64encode
    return _standin_toml(
        tmp_path, port,
        {"pan_key_env": "AUTHGW_TEST_UNSET_PAN", "pan_key_b64": b64(KEY_B).decode(),
         "retired_pan_keys": [{"id": ID_A, "b64": b64(KEY_A).decode()}]},
    )  # fmt: skip


def _inline(tables: list[dict[str, str]]) -> str:
    return (
        "["
        + ", ".join("{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in t.items()) + " }" for t in tables)
        + "]"
    )


async def test_status_command_says_when_the_retired_key_may_go(redis_port: int, tmp_path: Path) -> None:
    """`authgw standin status` lists pending entries per key id: the retired key is not droppable yet."""

    cfg = _rotated_toml(tmp_path, redis_port)
    await decide(redis_port, tmp_path / "l.db", A, new_pans(2))
    code, out, err = await authgw("standin", "status", "--config", str(cfg))
    assert code == 0, err
    keys = {row["key_id"]: row for row in json.loads(out)["pan_keys"]["keys"]}
    assert (keys[ID_A]["role"], keys[ID_A]["journal"], keys[ID_A]["droppable"]) == ("retired", 2, False)
    assert (keys[ID_B]["role"], keys[ID_B]["droppable"]) == ("current", False)


# -- config: where keys come from, and the mistakes refused at load ------------------------------------

TOKEN_B64 = base64.b64encode(bytes(range(32))).decode()
ENV_B = {"AUTHGW_TOKEN_KEY": TOKEN_B64, "AUTHGW_PAN_KEY": base64.b64encode(KEY_B).decode()}


def _load(tmp_path: Path, keys: dict[str, object], env: dict[str, str] | None = None) -> StandInConfig:
    return load_config(_standin_toml(tmp_path, 6379, keys), ENV_B if env is None else env)


def test_retired_keys_come_from_environment_file_or_inline(tmp_path: Path) -> None:
    """Three retired keys, one per source, load in order; the keyring opens their entries; no key in repr."""
    keys = [bytes([i]) * 32 for i in (1, 2, 3)]
    ids = [PanKeyring.of(k).key_id for k in keys]
    (tmp_path / "old.key").write_text(base64.b64encode(keys[1]).decode() + "\n")
    env = {**ENV_B, "OLD_PAN_KEY": base64.b64encode(keys[0]).decode()}
    retired = [
        {"id": ids[0], "env": "OLD_PAN_KEY"},
        {"id": ids[1], "file": "old.key"},  # relative to the config file
        {"id": ids[2], "b64": base64.b64encode(keys[2]).decode()},
    ]
    config = _load(tmp_path, {"retired_pan_keys": retired}, env)
    assert config.retired_pan_keys == tuple(keys)
    ring = config.pan_keyring()
    assert (ring.key_id, ring.retired_ids) == (ID_B, tuple(ids))
    sealed = PanKeyring.of(keys[1]).seal("4000000000000002", "d-1")
    assert ring.open(sealed[0], "d-1", sealed[1]) == "4000000000000002"
    assert not any(base64.b64encode(k).decode() in repr(config) for k in keys)


def test_retired_key_under_the_wrong_id_is_refused(tmp_path: Path) -> None:
    """A retired key whose id is not the one written is refused, naming the entry and both ids."""
    with pytest.raises(ConfigError, match=rf"retired_pan_keys\[0\].*has id {ID_A}, not 0badc0de"):
        _load(tmp_path, {"retired_pan_keys": [{"id": "0badc0de", "b64": base64.b64encode(KEY_A).decode()}]})


def test_the_current_key_listed_as_retired_is_refused(tmp_path: Path) -> None:
    """Listing the current key among the retired ones is a mistake named at load."""
    with pytest.raises(ConfigError, match=rf"retired_pan_keys\[0\].*{ID_B} is also the current key"):
        _load(tmp_path, {"retired_pan_keys": [{"id": ID_B, "b64": base64.b64encode(KEY_B).decode()}]})


def test_retired_key_from_an_unset_variable_is_refused(tmp_path: Path) -> None:
    """A retired key read from an environment variable that is not set names the variable."""
    with pytest.raises(ConfigError, match=r"\$AUTHGW_PAN_KEY_2025 is not set"):
        _load(tmp_path, {"retired_pan_keys": [{"id": ID_A, "env": "AUTHGW_PAN_KEY_2025"}]})


def test_retired_key_needs_exactly_one_source(tmp_path: Path) -> None:
    """A retired key with two sources (or none) is refused."""
    both = {"id": ID_A, "env": "X", "b64": base64.b64encode(KEY_A).decode()}
    with pytest.raises(ConfigError, match="exactly one of env, file, b64"):
        _load(tmp_path, {"retired_pan_keys": [both]})


def test_current_key_from_a_file_unless_the_environment_has_one(tmp_path: Path) -> None:
    """pan_key_file gives the current key; $AUTHGW_PAN_KEY, when set, wins over it."""
    (tmp_path / "pan.key").write_text(base64.b64encode(KEY_A).decode())
    keys = {"pan_key_file": "pan.key"}
    assert _load(tmp_path, keys, {"AUTHGW_TOKEN_KEY": TOKEN_B64}).pan_key == KEY_A
    assert _load(tmp_path, keys).pan_key == KEY_B
    with pytest.raises(ConfigError, match=r"pan_key_file.*cannot read"):
        _load(tmp_path, {"pan_key_file": "missing.key"}, {"AUTHGW_TOKEN_KEY": TOKEN_B64})


def test_pan_key_id_guards_against_the_wrong_current_key(tmp_path: Path) -> None:
    """With pan_key_id written, a current key of another id is refused at load."""
    assert _load(tmp_path, {"pan_key_id": ID_B}).pan_key == KEY_B
    with pytest.raises(ConfigError, match=rf"keys.pan_key_id.*has id {ID_B}, not {ID_A}"):
        _load(tmp_path, {"pan_key_id": ID_A})


def test_unknown_key_error_names_the_key_never_the_pan() -> None:
    """Opening an entry of an unconfigured key raises UnknownPanKeyError with its id, not its PAN."""
    pan = "4000001234567899"
    sealed, key_id = A.seal(pan, "d-2")
    with pytest.raises(UnknownPanKeyError) as info:
        B.open(sealed, "d-2", key_id)
    assert info.value.key_id == ID_A and ID_A in str(info.value)
    assert pan[:6] not in str(info.value) and pan[6:-4] not in str(info.value)


class _NoSender:
    """The worker below has nothing to send; a call would be a bug in the test."""

    async def send(self, advice: Advice, *, deadline: timedelta) -> SendResult:
        raise AssertionError("nothing to send")

    async def reverse(self, advice: ReversalAdvice, *, deadline: timedelta) -> SendResult:
        raise AssertionError("nothing to send")


async def test_heartbeats_say_which_keys_each_gateway_runs(redis_port: int, tmp_path: Path) -> None:
    """A worker built from config reports its token and PAN key ids; status shows the PAN key in use there."""
    cfg = _rotated_toml(tmp_path, redis_port)
    config = load_config(cfg, {"AUTHGW_TOKEN_KEY": TOKEN_B64})
    settings = dataclasses.replace(FAST, heartbeat=timedelta(milliseconds=100))
    r = client(redis_port)
    gate = RedisGate(r, timedelta(seconds=5))
    async with Settlement.from_config(config, settings, sender=_NoSender(), issuer_healthy=lambda: True):

        async def reported() -> dict[str, Any]:
            status = await settlement_status(gate, JournalSettings(), now_ms=0, keyring=config.pan_keyring())
            [row] = status["gateways"]["gw-keys"]["workers"]
            assert row["token_key_id"] == CardTokenizer(config.token_key).key_id
            return status

        status = await assert_eventually(reported, timeout_s=15)  # a loaded machine: heartbeats late
    await r.aclose()
    [row] = status["gateways"]["gw-keys"]["workers"]
    assert row["pan_key_id"] == ID_B
    keys = {k["key_id"]: k for k in status["pan_keys"]["keys"]}
    assert keys[ID_B]["current_on"] == ["gw-keys"]
    assert keys[ID_A]["droppable"] is True  # nothing sealed under A is left anywhere
