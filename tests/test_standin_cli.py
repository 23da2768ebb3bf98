"""Issuer card-status files and the `authgw standin` / `authgw settle` commands (real processes)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import PAN_AMEX, PAN_MC, PAN_VISA
from test_standin_support import ENV, IMPATIENT, TOKEN_KEY, client, engine, luhn_pan, request

from chaos.pki import PLAINTEXT_TOML
from chaos.processes import free_port, start_redis
from standin import CardStatus, CardStatusFileError, Reason, ResponseCode
from standin.cardstatus import CardStatusRecord, load_card_statuses, read_card_status_file
from standin.keys import card_status_key
from standin.redis_io import RedisGate
from standin.tokens import CardTokenizer

REPO = Path(__file__).resolve().parents[1]


def config_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "standin.toml"
    path.write_text(
        f'[standin]\ninstance = "gw-cli"\n[redis]\nurl = "redis://127.0.0.1:{port}/0"\ninsecure = true\n'
        f'[local]\nsqlite_path = "local.sqlite3"\n'
    )
    return path


async def authgw(*args: str) -> tuple[int, str, str]:
    """Run `authgw <args>` (the real console entry point) and return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args,
        env={**os.environ, **ENV}, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_csv_with_header_and_comments_is_read(tmp_path: Path) -> None:
    """A CSV file with a header, a comment and a blank line yields its cards."""
    path = tmp_path / "s.csv"
    path.write_text(f"pan,status\n# pushed 2025-08-30\n\n{PAN_VISA},lost\n{PAN_MC},STOLEN\n")
    assert list(read_card_status_file(path)) == [
        CardStatusRecord(PAN_VISA, CardStatus.LOST),
        CardStatusRecord(PAN_MC, CardStatus.STOLEN),
    ]


def test_json_lines_are_read(tmp_path: Path) -> None:
    """A JSON-lines file yields its cards."""
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"pan": PAN_AMEX, "status": "blocked"}) + "\n")
    assert list(read_card_status_file(path)) == [CardStatusRecord(PAN_AMEX, CardStatus.BLOCKED)]


def test_bad_status_names_the_line(tmp_path: Path) -> None:
    """An unknown status is refused with the file and line number."""
    path = tmp_path / "s.csv"
    path.write_text(f"{PAN_VISA},lost\n{PAN_MC},misplaced\n")
    with pytest.raises(CardStatusFileError, match=r"s\.csv:2: status 'misplaced'"):
        list(read_card_status_file(path))


def test_bad_pan_error_shows_only_the_last_four_digits(tmp_path: Path) -> None:
    """A malformed PAN is reported by its last four characters, never in full."""
    path = tmp_path / "s.csv"
    path.write_text("41111111111x1111,lost\n")
    with pytest.raises(CardStatusFileError) as info:
        list(read_card_status_file(path))
    assert "…1111" in str(info.value) and "41111111111x1111" not in str(info.value)


DISTINCT_PAN = luhn_pan("539817264193758")  # its BIN and middle digits appear nowhere else


def _no_pan_beyond_last_four(text: str, pan: str) -> bool:
    return pan[:6] not in text and pan[6:-4] not in text and pan[-4:] in text


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (json.dumps({"pan": int(PAN_VISA), "status": "lost"}), PAN_VISA),  # a JSON number
        (json.dumps({"pan": float(PAN_MC), "status": "lost"}), ""),  # a float: its text is not the PAN
        (json.dumps({"pan": [PAN_VISA], "status": "lost"}), ""),
        (json.dumps({"pan": PAN_VISA, "status": int(PAN_MC)}), PAN_MC),  # a PAN as the status
        (f"{PAN_VISA},{PAN_MC}", PAN_MC),  # a CSV line with a PAN in the status column
        (f"{PAN_VISA},stolen {PAN_MC[:8]}-{PAN_MC[8:]}", PAN_MC),  # with a separator
        (f"{PAN_VISA},{'x' * 30}{DISTINCT_PAN}", DISTINCT_PAN),  # long: cut after masking, not before
    ],
)
def test_bad_card_status_lines_never_echo_a_pan(tmp_path: Path, line: str, shown: str) -> None:
    """A bad line with PANs (a non-text pan, in the status) names the line, shows at most last four digits."""
    path = tmp_path / "s.txt"
    path.write_text(line + "\n")
    with pytest.raises(CardStatusFileError, match=r"s\.txt:1: ") as info:
        list(read_card_status_file(path))
    message = str(info.value)
    for pan in (PAN_VISA, PAN_MC, DISTINCT_PAN):
        assert pan[:6] not in message and pan[6:-4] not in message, message
    if shown:
        assert f"…{shown[-4:]}" in message, message


async def test_load_card_status_command_shows_no_pan_of_a_bad_file(redis_port: int, tmp_path: Path) -> None:
    """`authgw standin load-card-status` on a file with a numeric pan exits 1, its error without the PAN."""
    statuses = tmp_path / "statuses.jsonl"
    statuses.write_text(json.dumps({"pan": int(PAN_VISA), "status": "lost"}) + "\n")
    code, out, err = await authgw(
        "standin", "load-card-status", str(statuses), "--config", str(config_file(tmp_path, redis_port))
    )
    assert code == 1 and "statuses.jsonl:1: pan …1111" in err, err
    assert _no_pan_beyond_last_four(out + err, PAN_VISA)


async def test_statuses_are_stored_under_tokens_and_active_clears(redis_port: int) -> None:
    """Loading writes one tokenized key per card; a later 'active' line removes it."""
    r = client(redis_port)
    gate = RedisGate(r, timedelta(seconds=2))
    tokenizer = CardTokenizer(TOKEN_KEY)
    report = await load_card_statuses(
        gate,
        tokenizer,
        [CardStatusRecord(PAN_VISA, CardStatus.LOST), CardStatusRecord(PAN_MC, CardStatus.BLOCKED)],
    )
    assert (report.set, report.cleared) == (2, 0)
    assert await r.get(card_status_key(tokenizer.token(PAN_VISA))) == b"lost"
    await load_card_statuses(gate, tokenizer, [CardStatusRecord(PAN_VISA, CardStatus.ACTIVE)])
    assert await r.get(card_status_key(tokenizer.token(PAN_VISA))) is None
    await r.aclose()


async def test_load_card_status_command_makes_stand_in_decline(redis_port: int, tmp_path: Path) -> None:
    """`authgw standin load-card-status FILE` loads the file; stand-in then answers 43 for the stolen card."""
    statuses = tmp_path / "statuses.csv"
    statuses.write_text(f"pan,status\n{PAN_VISA},stolen\n")
    code, out, err = await authgw(
        "standin", "load-card-status", str(statuses), "--config", str(config_file(tmp_path, redis_port))
    )
    assert code == 0, err
    assert json.loads(out) == {"file": str(statuses), "set": 1, "cleared": 0}
    async with engine(redis_port, tmp_path / "l.db") as e:
        d = await e.decide(request(PAN_VISA), Reason.FORCED)
    assert d.response_code is ResponseCode.STOLEN_CARD


async def test_status_command_reports_journal_depth(redis_port: int, tmp_path: Path) -> None:
    """`authgw standin status` prints Redis reachability, stream length per partition and local backlog."""
    cfg = config_file(tmp_path, redis_port)
    async with engine(redis_port, tmp_path / "l.db") as e:
        await e.decide(request(PAN_VISA), Reason.FORCED)
    code, out, err = await authgw("standin", "status", "--config", str(cfg))
    assert code == 0, err
    status = json.loads(out)
    assert (status["redis_up"], status["local_backlog"]) == (True, 0)
    assert status["partitions"] == [{"partition": 0, "length": 1, "pending": 0}]


async def test_replay_command_moves_the_local_backlog(tmp_path: Path) -> None:
    """`authgw standin replay` moves decisions recorded locally while Redis was down into the stream."""
    port = free_port()
    cfg = config_file(tmp_path, port)
    async with engine(port, tmp_path / "local.sqlite3", redis_settings=IMPATIENT) as e:
        local = [await e.decide(request(PAN_VISA), Reason.FORCED) for _ in range(3)]
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
    try:
        code, out, err = await authgw("standin", "replay", "--config", str(cfg))
        assert code == 0, err
        r = client(port)
        ids = [f[b"decision_id"].decode() for _, f in await r.xrange("authgw:{journal:0}:decisions")]
        await r.aclose()
    finally:
        await asyncio.to_thread(redis.stop)
    assert json.loads(out) == {"moved": 3, "local_backlog": 0}
    assert ids == [d.decision_id for d in local]


async def test_bad_config_is_reported_with_its_key(tmp_path: Path) -> None:
    """A config error exits 1 and names the key."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[redis]\ninsecure = true\n[journal]\npartitions = 0\n")
    code, _, err = await authgw("standin", "status", "--config", str(cfg))
    assert code == 1 and "journal.partitions" in err


def gateway_config_file(tmp_path: Path, redis_port: int, instance: str = "gw-op") -> Path:
    """A gateway config whose [standin] names the stand-in file (local journal left to its default)."""
    config_file(tmp_path, redis_port)
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\ninstance = "{instance}"\n{PLAINTEXT_TOML}[[pools]]\nname = "p"\n'
        'members = [{ name = "m", address = "127.0.0.1:9" }]\n[standin]\nconfig = "standin.toml"\n'
    )
    return path


async def test_status_takes_the_gateways_config(redis_port: int, tmp_path: Path) -> None:
    """`authgw standin status --config gateway.toml` reads the gateway's own file (it used to refuse it)."""
    cfg = gateway_config_file(tmp_path, redis_port)
    code, out, err = await authgw("standin", "status", "--config", str(cfg))
    assert code == 0, err
    assert json.loads(out)["redis_up"] is True


async def _decide_locally_then_replay(
    tmp_path: Path, port: int, journal: Path, pan: str, *replays: list[str]
) -> tuple[list[str], list[tuple[int, str, str]], list[str]]:
    """Decide twice with Redis down (recorded in `journal`), start Redis on `port`, run each replay.

    Returns the local decision ids, each replay's (code, stdout, stderr) and the stream's decision ids.
    """
    async with engine(port, journal, redis_settings=IMPATIENT) as e:
        local = [(await e.decide(request(pan), Reason.FORCED)).decision_id for _ in range(2)]
    redis = await asyncio.to_thread(start_redis, tmp_path / "redis", port)
    try:
        runs = [await authgw(*argv) for argv in replays]
        r = client(port)
        ids = [f[b"decision_id"].decode() for _, f in await r.xrange("authgw:{journal:0}:decisions")]
        await r.aclose()
    finally:
        await asyncio.to_thread(redis.stop)
    return local, runs, ids


async def test_replay_with_the_gateways_config_moves_what_that_gateway_wrote(tmp_path: Path) -> None:
    """With the gateway's config, replay moves the journal the gateway writes (<instance>.sqlite3)."""
    port = free_port()
    cfg = gateway_config_file(tmp_path, port, instance="gw-op")
    replay = ["standin", "replay", "--config", str(cfg)]
    local, [(code, out, err)], ids = await _decide_locally_then_replay(
        tmp_path, port, tmp_path / "gw-op.sqlite3", PAN_VISA, replay
    )
    assert code == 0, err
    assert json.loads(out) == {"moved": 2, "local_backlog": 0}
    assert ids == local


async def test_replay_of_a_copied_local_journal(tmp_path: Path) -> None:
    """`replay --local-journal FILE` settles another host's journal (a copy), each decision once."""
    port = free_port()
    cfg = gateway_config_file(tmp_path, port, instance="gw-here")
    lost_host = tmp_path / "copy-of-gw-lost.sqlite3"
    replay = ["standin", "replay", "--config", str(cfg), "--local-journal", str(lost_host)]
    local, [first, again], ids = await _decide_locally_then_replay(
        tmp_path, port, lost_host, PAN_MC, replay, replay
    )
    assert first[0] == 0 and again[0] == 0, (first[2], again[2])
    assert json.loads(first[1])["moved"] == 2 and json.loads(again[1])["moved"] == 0
    assert ids == local
