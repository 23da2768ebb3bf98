"""ISO 8583 encode/decode cost: `python -m chaos.bench_iso8583`.

Encodes and decodes one chip 0100 (the fields an acquirer sends, track 2, PIN block and
chip data included) N times per round, for each bitmap encoding, and prints the median
microseconds per message over the rounds: through `Message` (every field and MTI rule
applied) and through pyiso8583 alone on the same spec, so the cost of our checks shows.
Numbers only, no pass/fail: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import iso8583

from authgw.iso8583 import BitmapEncoding, Message, Spec, currency_numeric

__all__ = ["main"]


def chip_authorization() -> Message:
    """A chip-and-PIN 0100 with every field an acquirer sends."""
    return Message(
        "0100",
        {
            2: "4111111111111111",
            3: "000000",
            4: "000000012345",
            7: "1127143005",
            11: "000123",
            12: "153005",
            13: "1127",
            14: "2812",
            18: "5411",
            22: "051",
            32: "12345678901",
            35: "4111111111111111=28121010000012345678",
            37: "633114000123",
            41: "TERM0001",
            42: "MERCHANT0000001",
            43: "SUPERMARCHE DU COIN      PARIS        FR",
            49: currency_numeric("EUR"),
            52: bytes.fromhex("0412AC89ABCDEF67"),
            55: bytes.fromhex("9F2608A1B2C3D4E5F607189F2701809F100706010A03A0B0009F3704" + "00" * 40),
        },
    )


def _median_us(work: Callable[[], object], count: int, rounds: int) -> float:
    """Median over `rounds` of the microseconds one call of `work` takes, timed over `count` calls."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            work()
        samples.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(samples)


def _timings(message: Message, bitmap: BitmapEncoding, count: int, rounds: int) -> tuple[int, list[float]]:
    """Frame size, then median us of: our encode, our decode, pyiso8583's encode, pyiso8583's decode."""
    spec = Spec(bitmap)
    raw = message.encode(spec)
    library = spec.library_spec()
    doc, _ = iso8583.decode(raw, library)

    def library_encode() -> object:
        return iso8583.encode(dict(doc), library)  # a copy, as Message.encode builds its own dict

    works: list[Callable[[], object]] = [
        lambda: message.encode(spec),
        lambda: Message.decode(raw, spec),
        library_encode,
        lambda: iso8583.decode(raw, library),
    ]
    return len(raw), [_median_us(work, count, rounds) for work in works]


def main(argv: list[str] | None = None) -> None:
    """Print encode and decode microseconds per 0100, ours and pyiso8583's, for both bitmap encodings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is printed")
    args = parser.parse_args(argv)

    message = chip_authorization()
    print(f"0100 with chip data, {args.messages} messages x {args.rounds} rounds, median us per message")
    print(f"{'bitmap':<10} {'bytes':>5} {'encode':>8} {'decode':>8} {'lib enc':>8} {'lib dec':>8}")
    for bitmap in BitmapEncoding:
        size, timings = _timings(message, bitmap, args.messages, args.rounds)
        print(f"{bitmap.value:<10} {size:>5} " + " ".join(f"{t:>8.1f}" for t in timings))


if __name__ == "__main__":
    main()
