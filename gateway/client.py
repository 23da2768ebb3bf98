"""`authgw authorize`: send one authorization and print the answer as one JSON object.

The gateway requires mutual TLS: give the acquirer's certificate, key and the gateway's CA
(--cert/--key/--ca, or $AUTHGW_CLIENT_CERT/$AUTHGW_CLIENT_KEY/$AUTHGW_CA); --insecure talks
plaintext to a development gateway configured with `[tls] insecure = true`.

Several gateways (--target repeated, or comma-separated) share one round_robin channel; a refusal
(UNAVAILABLE, RESOURCE_EXHAUSTED) is sent again, same request_id, to the next gateway
(`gateway.fleet_client`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path

import grpc
import pycountry
from google.protobuf import json_format

from authgw.security import CertificateError, TlsFiles, channel_credentials, channel_options, load_tls_files
from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc
from gateway.fleet_client import ROUND_ROBIN_OPTIONS, authorize_on_fleet, fleet_target

__all__ = ["build_request", "main", "minor_units"]


def minor_units(amount: str, currency: str, prog: str = "authgw authorize") -> int:
    """'12.34' EUR -> 1234, by the currency's ISO 4217 exponent (JPY 0, KWD 3); SystemExit names --amount."""
    exponent = 3 if currency in {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"} else 2
    if currency in {"JPY", "KRW", "ISK", "CLP", "VND", "XAF", "XOF", "XPF", "PYG", "UGX", "RWF", "KMF"}:
        exponent = 0
    try:
        value = Decimal(amount)
    except InvalidOperation as exc:
        raise SystemExit(f"{prog}: --amount: not a number: {amount!r}") from exc
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise SystemExit(f"{prog}: --amount: {amount} has more than {exponent} decimals for {currency}")
    return int(minor)


def build_request(args: argparse.Namespace) -> pb.AuthorizeRequest:
    currency = args.currency.upper()
    if pycountry.currencies.get(alpha_3=currency) is None:
        currency = args.currency  # let the gateway reject it with a clear message
    req = pb.AuthorizeRequest(
        request_id=args.request_id or uuid.uuid4().hex,
        acquirer_id=args.acquirer_id,
        pan=args.pan,
        amount_minor=minor_units(args.amount, currency),
        currency=currency,
        mcc=args.mcc,
        channel=args.channel.upper(),
        merchant_id=args.merchant_id,
        terminal_id=args.terminal_id,
        merchant_country=args.merchant_country,
        pin_verified=args.pin_verified,
        cardholder_authenticated=args.authenticated,
    )
    req.transmitted_at.GetCurrentTime()
    return req


def _targets(args: argparse.Namespace) -> list[str]:
    given = args.target or ["127.0.0.1:50051"]
    return [t.strip() for group in given for t in group.split(",") if t.strip()]


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    """Mutual TLS with the acquirer's certificate; plaintext only with --insecure (said on stderr)."""
    try:
        target = fleet_target(_targets(args), "--target")
    except ValueError as exc:
        raise SystemExit(f"authgw authorize: {exc}") from exc
    if args.insecure:
        print("authgw authorize: --insecure: plaintext, the card number travels in clear", file=sys.stderr)
        return grpc.aio.insecure_channel(target, options=ROUND_ROBIN_OPTIONS)
    files = [args.cert, args.key, args.ca]
    if not all(files):
        missing = [f"--{n}" for n, v in zip(("cert", "key", "ca"), files, strict=True) if not v]
        raise SystemExit(
            f"authgw authorize: {', '.join(missing)} missing: the gateway requires the acquirer's "
            "certificate (or --insecure for a plaintext development gateway)"
        )
    try:
        material = load_tls_files(TlsFiles(cert=Path(args.cert), key=Path(args.key), ca=Path(args.ca)))
    except CertificateError as exc:
        raise SystemExit(f"authgw authorize: {exc}") from exc
    if len(_targets(args)) > 1 and not args.server_name:
        raise SystemExit(
            "authgw authorize: --server-name missing: several --target share one channel, which checks "
            "every gateway's certificate against one name they all carry (dev PKI: gateway.authgw.test)"
        )
    options = channel_options(args.server_name or None, ROUND_ROBIN_OPTIONS)
    return grpc.aio.secure_channel(target, channel_credentials(material), options=options)


async def _send(args: argparse.Namespace, req: pb.AuthorizeRequest) -> pb.AuthorizeResponse:
    async with _channel(args) as channel:
        stub = pb_grpc.AuthorizationStub(channel)
        attempts = len(_targets(args))
        return await authorize_on_fleet(stub, req, timeout_s=args.timeout, attempts=attempts)


def main(argv: list[str]) -> int:
    names = pb.Channel.keys()  # protobuf's enum wrapper: keys() is its API, not a dict's
    channels = [n.lower() for n in names if n != "CHANNEL_UNSPECIFIED"]
    parser = argparse.ArgumentParser(prog="authgw authorize", description="send one authorization")
    parser.add_argument(
        "--target",
        action="append",
        help="gateway host:port (default 127.0.0.1:50051); repeat or comma-separate: a fleet, round_robin",
    )
    parser.add_argument("--pan", required=True)
    parser.add_argument("--amount", required=True, help="major units, e.g. 12.34")
    parser.add_argument("--currency", default="EUR")
    parser.add_argument("--mcc", default="5411")
    parser.add_argument("--channel", default="pos_chip", choices=channels)
    parser.add_argument("--request-id", default="")
    parser.add_argument(
        "--acquirer-id",
        default=os.environ.get("AUTHGW_ACQUIRER_ID", "1001"),
        help="acquiring institution id, digits (default: $AUTHGW_ACQUIRER_ID or %(default)s)",
    )
    parser.add_argument("--merchant-id", default="M0001")
    parser.add_argument("--terminal-id", default="T0001")
    parser.add_argument("--merchant-country", default="FR")
    parser.add_argument("--pin-verified", action="store_true")
    parser.add_argument("--authenticated", action="store_true", help="3-D Secure authenticated")
    parser.add_argument("--timeout", type=float, default=5.0, help="client deadline, seconds")
    env = os.environ.get
    parser.add_argument("--cert", default=env("AUTHGW_CLIENT_CERT", ""), help="acquirer certificate (PEM)")
    parser.add_argument("--key", default=env("AUTHGW_CLIENT_KEY", ""), help="its private key (PEM)")
    parser.add_argument("--ca", default=env("AUTHGW_CA", ""), help="CA of the gateway's certificate (PEM)")
    parser.add_argument("--server-name", default="", help="name the gateway's certificate must carry")
    parser.add_argument("--insecure", action="store_true", help="plaintext (a development gateway only)")
    args = parser.parse_args(argv[1:])
    req = build_request(args)
    try:
        resp = asyncio.run(_send(args, req))
    except grpc.aio.AioRpcError as exc:
        print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    out = json_format.MessageToDict(
        resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    print(json.dumps(out))
    return 0
