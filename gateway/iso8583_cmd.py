"""`authgw iso8583 send`: one ISO 8583 message built from flags, its reply printed field by field.

    authgw iso8583 send --target H:P --mti 0100 --pan 4111111111111111 --amount 12.34 \\
        --cert acquirer.crt --key acquirer.key --ca ca.crt

0100 / 0200 authorizations, 0120 / 0121 / 0220 / 0221 acquirer advices (--response-code 00 with
--approval-code, or Y1 / Y3), 0400 / 0420 / 0421 reversals of --original-stan sent at
--original-time (--final-amount: partial, field 95), 0800 network management (--network-code
001 / 002 / 301). Mutual TLS with the acquirer's certificate (--cert/--key/--ca, or
$AUTHGW_CLIENT_CERT/_KEY and $AUTHGW_CA); --insecure for a plaintext development listener.
Framing flags must match the listener's (`[iso8583_listen]`). The PAN is printed as its last four.
Exit 0 when the reply arrived (whatever its field 39), 1 when none did, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path

from authgw.iso8583 import (
    FIELDS,
    BitmapEncoding,
    Channel,
    FormatError,
    Frame,
    Framing,
    Iso8583Error,
    LengthHeader,
    MerchantLocation,
    Message,
    OriginalData,
    Spec,
    Tpdu,
    currency_numeric,
    format_amount,
    local_date_time,
    open_channel,
    replacement_amounts,
    transmission_time,
)
from authgw.security import CertificateError, TlsFiles, load_tls_files
from gateway.client import minor_units

__all__ = ["build_message", "main"]

PROG = "authgw iso8583 send"
_NAMES = {fd.number: fd.name for fd in FIELDS}
_FINANCIAL = ("0100", "0200", "0120", "0121", "0220", "0221")
_REVERSALS = ("0400", "0420", "0421")


def _amount(args: argparse.Namespace, text: str) -> str:
    return format_amount(minor_units(text, args.currency.upper(), PROG))


def _financial(args: argparse.Namespace, now: datetime, stan: str) -> dict[int, str | bytes]:
    local_time, local_date = local_date_time(now.astimezone())
    fields: dict[int, str | bytes] = {
        2: args.pan, 3: args.processing_code, 4: _amount(args, args.amount), 7: transmission_time(now),
        11: stan, 12: local_time, 13: local_date, 18: args.mcc, 22: args.entry_mode, 32: args.acquirer_id,
        37: args.rrn or f"{now:%y%j%H}{stan}"[-12:], 41: f"{args.terminal_id:<8}"[:8],
        42: f"{args.merchant_id:<15}"[:15], 49: currency_numeric(args.currency),
        43: MerchantLocation(args.merchant_name, args.merchant_city, args.merchant_country).encode(),
    }  # fmt: skip
    if args.expiry:
        fields[14] = args.expiry
    if args.mti in _FINANCIAL[2:]:
        fields[39] = args.response_code
        if args.approval_code:
            fields[38] = args.approval_code
    return fields


def _reversal(args: argparse.Namespace, now: datetime, stan: str) -> dict[int, str | bytes]:
    if not (args.original_stan and args.original_time):
        raise SystemExit(
            f"{PROG}: a reversal needs --original-stan and --original-time (the original's 11 and 7)"
        )
    fields = _financial(args, now, stan)
    fields = {n: v for n, v in fields.items() if n in (2, 3, 4, 7, 11, 32, 37, 41, 42, 49)}
    original = OriginalData(args.original_mti, args.original_stan, args.original_time, args.acquirer_id)
    fields[90] = original.encode()
    if args.final_amount is not None:
        fields[95] = replacement_amounts(minor_units(args.final_amount, args.currency.upper(), PROG))
    return fields


def build_message(args: argparse.Namespace, now: datetime) -> Message:
    """The message the flags describe (FormatError names a field the flags got wrong)."""
    stan = args.stan or f"{random.randint(1, 999_999):06d}"
    if args.mti == "0800":
        return Message("0800", {7: transmission_time(now), 11: stan, 70: args.network_code})
    if args.mti in _REVERSALS:
        return Message(args.mti, _reversal(args, now, stan))
    return Message(args.mti, _financial(args, now, stan))


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.insecure:
        print(f"{PROG}: --insecure: plaintext, the card number travels in clear", file=sys.stderr)
        return None
    files = [args.cert, args.key, args.ca]
    if not all(files):
        missing = ", ".join(f"--{n}" for n, v in zip(("cert", "key", "ca"), files, strict=True) if not v)
        raise SystemExit(f"{PROG}: {missing} missing: the listener requires the acquirer's certificate")
    try:
        material = load_tls_files(TlsFiles(cert=Path(args.cert), key=Path(args.key), ca=Path(args.ca)))
    except CertificateError as exc:
        raise SystemExit(f"{PROG}: {exc}") from exc
    context = ssl.create_default_context(cafile=str(material.files.ca))
    context.load_cert_chain(material.files.cert, material.files.key)
    return context


def _framing(args: argparse.Namespace) -> tuple[Framing, Tpdu | None]:
    tpdu = None
    if args.tpdu:
        destination, _, source = args.tpdu.partition(":")
        tpdu = Tpdu(int(destination, 16), int(source or "0", 16))
    return Framing(header=LengthHeader(args.length_header), tpdu=tpdu is not None), tpdu


async def send(args: argparse.Namespace, message: Message) -> Message | None:
    """Send `message`; its reply, or None when none matched within --timeout."""
    framing, tpdu = _framing(args)
    spec = Spec(BitmapEncoding(args.bitmap))
    host, _, port = args.target.rpartition(":")
    channel: Channel = await open_channel(
        host, int(port), framing, connect_timeout_s=args.timeout, ssl=_tls(args)
    )
    try:
        await channel.write(Frame(message.encode(spec), tpdu))
        async with asyncio.timeout(args.timeout):
            while True:
                reply = Message.decode((await channel.read()).payload, spec)
                if reply.match_key == message.match_key:
                    return reply
    except TimeoutError:
        return None
    finally:
        await channel.wait_closed()


def describe(message: Message) -> str:
    """The message field by field (PAN as its last four, sensitive fields left out)."""
    lines = [f"MTI  {message.mti}"]
    shown = message.redacted()
    for number in sorted(message.fields):
        if str(number) in shown:
            lines.append(f"{number:>3}  {_NAMES.get(number, '')[:48]:<48}  {shown[str(number)]}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog=PROG, description="send one ISO 8583 message, print the reply")
    p.add_argument("--target", default="127.0.0.1:8583", help="listener host:port")
    p.add_argument("--mti", default="0100", choices=[*_FINANCIAL, *_REVERSALS, "0800"])
    p.add_argument("--pan", default="")
    p.add_argument("--amount", default="1.00", help="major units, e.g. 12.34 (field 4)")
    p.add_argument("--currency", default="EUR", help="ISO 4217 alpha-3 (sent numeric, field 49)")
    p.add_argument("--mcc", default="5411")
    p.add_argument(
        "--entry-mode", default="051", help="field 22: 051 chip, 071 contactless, 901 stripe, 812 online"
    )
    p.add_argument("--processing-code", default="000000", help="field 3")
    p.add_argument("--expiry", default="", help="YYMM (field 14)")
    p.add_argument("--acquirer-id", default=env("AUTHGW_ACQUIRER_ID", "1001"), help="field 32")
    p.add_argument("--terminal-id", default="TERM0001")
    p.add_argument("--merchant-id", default="MERCHANT0000001")
    p.add_argument("--merchant-name", default="AUTHGW TEST MERCHANT")
    p.add_argument("--merchant-city", default="PARIS")
    p.add_argument("--merchant-country", default="FR")
    p.add_argument("--stan", default="", help="field 11 (default: random)")
    p.add_argument("--rrn", default="", help="field 37 (default: from the date and the STAN)")
    p.add_argument("--response-code", default="00", help="advices: 00 forced (with --approval-code), Y1, Y3")
    p.add_argument("--approval-code", default="", help="advices: field 38")
    p.add_argument("--original-mti", default="0100", help="reversals: the original's MTI (field 90)")
    p.add_argument("--original-stan", default="", help="reversals: the original's field 11")
    p.add_argument("--original-time", default="", help="reversals: the original's field 7 (MMDDhhmmss)")
    p.add_argument("--final-amount", default=None, help="partial reversal: what the transaction stands at")
    p.add_argument("--network-code", default="301", choices=["001", "002", "301"], help="0800: field 70")
    p.add_argument("--length-header", default="binary2", choices=[h.value for h in LengthHeader])
    p.add_argument("--tpdu", default="", help="DEST:SRC in hex (e.g. 0001:0002) on TPDU links")
    p.add_argument("--bitmap", default="ascii-hex", choices=[b.value for b in BitmapEncoding])
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to connect, and to wait for the reply"
    )
    p.add_argument("--cert", default=env("AUTHGW_CLIENT_CERT", ""), help="acquirer certificate (PEM)")
    p.add_argument("--key", default=env("AUTHGW_CLIENT_KEY", ""), help="its private key (PEM)")
    p.add_argument("--ca", default=env("AUTHGW_CA", ""), help="CA of the gateway's certificate (PEM)")
    p.add_argument("--insecure", action="store_true", help="plaintext (a development listener only)")
    return p


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] != "send":
        print(f"usage: authgw iso8583 send [options] (see {PROG} --help)", file=sys.stderr)
        return 2
    ns = parser().parse_args(args[1:])
    try:
        message = build_message(ns, datetime.now(UTC))
        reply = asyncio.run(send(ns, message))
    except FormatError as exc:  # a flag gave a field the format refuses: named
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Iso8583Error as exc:  # could not connect, or the connection closed
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(describe(message).replace("MTI ", "sent", 1), file=sys.stderr)
    if reply is None:
        print(f"{PROG}: no reply matching {message.match_key} within {ns.timeout} s", file=sys.stderr)
        return 1
    print(describe(reply))
    return 0
