"""docs/iso8583.md says what the code does: its field table and its worked example."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from authgw.iso8583 import (
    FIELDS,
    Frame,
    Framing,
    Kind,
    NetworkCode,
    Spec,
    build_reply,
    encode_frame,
    network_request,
)

DOC = (Path(__file__).resolve().parent.parent / "docs" / "iso8583.md").read_text()
_FORMATS = {0: "fixed", 2: "LLVAR", 3: "LLLVAR"}


def _field_rows() -> dict[int, list[str]]:
    rows = {}
    for line in DOC.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit() and len(cells) == 7:
            rows[int(cells[0])] = cells
    return rows


def test_the_field_table_matches_the_spec() -> None:
    """Each field of spec.FIELDS has a row with its type, format, encoding and length; no other row exists."""
    rows = _field_rows()
    assert sorted(rows) == [fd.number for fd in FIELDS]
    for fd in FIELDS:
        _, _, kind, form, encoding, length, _ = rows[fd.number]
        assert kind == fd.kind.value, fd.number
        assert form == _FORMATS[fd.prefix], fd.number
        assert ("binary" in encoding) == (fd.kind is Kind.B), fd.number
        expected = f"{'..' if fd.prefix else ''}{fd.length}{' bytes' if fd.kind is Kind.B else ''}"
        assert length == expected, fd.number


def test_the_worked_echo_example_is_the_frame_we_send() -> None:
    """The documented hex of the framed 0800 echo and of its 0810 reply are byte for byte what we encode."""
    example = DOC[DOC.index("## 6.") :]
    request_block, reply_block = re.findall(r"```\n(.*?)```", example, re.S)[:2]
    request_hex = " ".join(
        m.group(0)
        for line in request_block.splitlines()
        if (m := re.match(r"([0-9A-F]{2} )*[0-9A-F]{2}", line))
    )
    echo = network_request(NetworkCode.ECHO, "000001", datetime(2026, 11, 27, 14, 30, 5, tzinfo=UTC))
    spec = Spec()
    assert bytes.fromhex(request_hex) == encode_frame(Framing(), Frame(echo.encode(spec)))
    assert bytes.fromhex(reply_block) == encode_frame(Framing(), Frame(build_reply(echo, "00").encode(spec)))
