"""Hostile input: random and mutated frames raise nothing but the package's own errors."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_iso8583_support import every_message_type

from authgw.iso8583 import BitmapEncoding, Framing, Iso8583Error, Message, Spec, encode_frame, read_frame
from authgw.iso8583.framing import Frame

SPECS = (Spec(BitmapEncoding.ASCII_HEX), Spec(BitmapEncoding.BINARY))
VALID = [(spec, message.encode(spec)) for spec in SPECS for message in every_message_type().values()]
# Bytes that keep a mutation plausible: digits and hex letters move past the first checks.
PLAUSIBLE = st.sampled_from(b"0123456789ABCDEF =D\x00\xff")
_HEX = b"0123456789ABCDEF"


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Spec, bytes]:
    """A valid message of either bitmap encoding with a few bytes flipped, replaced, inserted, cut."""
    spec, valid = draw(st.sampled_from(VALID))
    raw = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        action = draw(
            st.sampled_from(["flip", "plausible", "insert", "delete", "truncate", "bit", "bitmaps"])
        )
        binary = spec.bitmap is BitmapEncoding.BINARY
        if action == "bitmaps":  # any primary and secondary bitmap: absent, extra and tertiary fields
            size = 16 if binary else 32
            bitmaps = draw(st.binary(min_size=16, max_size=16))
            raw[4 : 4 + size] = bitmaps if binary else bitmaps.hex().upper().encode()
        elif action == "bit":  # announce one field that is not there, or hide one that is
            bit = draw(st.sampled_from([0, 64]) | st.integers(0, 127))  # 0 and 64 extend the bitmap
            where = 4 + (bit // 8 if binary else bit // 4)
            if where < len(raw):
                raw[where] = raw[where] ^ (0x80 >> bit % 8) if binary else draw(st.sampled_from(_HEX))
        elif action == "truncate":
            del raw[at:]
        elif action == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif at < len(raw) and action == "delete":
            del raw[at : at + draw(st.integers(1, 8))]
        elif at < len(raw) and action == "flip":
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif at < len(raw):
            raw[at] = draw(PLAUSIBLE)
    return spec, bytes(raw)


frames = st.one_of(
    mutated(),
    st.tuples(st.sampled_from(SPECS), st.binary(max_size=300)),
    st.tuples(st.sampled_from(SPECS), st.binary(max_size=300).map(lambda tail: b"0100" + tail)),
)


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames)
def test_decode_raises_only_iso8583_errors(frame: tuple[Spec, bytes]) -> None:
    """10,000 random and mutated payloads: Message.decode returns a message or raises an Iso8583Error."""
    spec, raw = frame
    try:
        message = Message.decode(raw, spec)
    except Iso8583Error:
        return
    # What decodes is well-formed: it encodes back to itself.
    assert Message.decode(message.encode(spec), spec) == message


@settings(max_examples=2_000, deadline=None)
@given(data=st.binary(max_size=64), tpdu=st.booleans())
def test_read_frame_raises_only_iso8583_errors(data: bytes, tpdu: bool) -> None:
    """Any bytes, then the end of stream, give frames and then an Iso8583Error, never anything else."""
    framing = Framing(tpdu=tpdu, max_frame_bytes=48, body_timeout_s=1.0)
    loop = asyncio.new_event_loop()
    try:
        frames_read = loop.run_until_complete(_read_all(data, framing))
    finally:
        loop.close()
    assert all(encode_frame(framing, f) in data for f in frames_read)


async def _read_all(data: bytes, framing: Framing) -> list[Frame]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames_read = []
    while True:
        try:
            frames_read.append(await read_frame(reader, framing))
        except Iso8583Error:
            return frames_read
