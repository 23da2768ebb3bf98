"""An acquirer's one channel to a fleet of gateways: gRPC client-side `round_robin`.

Several gateway addresses become one target (`ipv4:127.0.0.1:a,127.0.0.1:b`; one address or
one DNS name stays as given: gRPC's DNS resolver hands round_robin every A record) and the
channel's service config selects `round_robin`, which sends each call to the next READY
gateway: a gateway whose connection broke leaves the rotation until it reconnects.

A call refused before any decision (UNAVAILABLE: the gateway is gone or draining;
RESOURCE_EXHAUSTED: admission control) is sent again, same request and request_id, and the
rotation gives it to another gateway. This is safe because the gateways answer idempotently
by (acquirer_id, request_id) (DESIGN.md): a request a dying gateway did decide is answered
with that decision, never decided twice.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Sequence

import grpc

from authgw.v1 import authorization_pb2 as pb
from authgw.v1 import authorization_pb2_grpc as pb_grpc

__all__ = ["RETRY_ELSEWHERE", "ROUND_ROBIN_OPTIONS", "authorize_on_fleet", "fleet_target"]

ROUND_ROBIN_OPTIONS: tuple[tuple[str, str], ...] = (
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
)
"""Channel options: round_robin over every address the target resolves to."""

RETRY_ELSEWHERE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
"""Statuses of a call no gateway decided: sent again (same request_id) to the next gateway."""


def fleet_target(targets: Sequence[str], field: str = "target") -> str:
    """`host:port` addresses -> one gRPC target; ValueError naming `field` when they cannot be one."""
    if not targets:
        raise ValueError(f"{field}: at least one gateway address is needed")
    if len(targets) == 1:
        return targets[0]
    families = {_family(t, field) for t in targets}
    if len(families) != 1:
        raise ValueError(f"{field}: mixes IPv4 and IPv6 addresses: {', '.join(targets)}")
    return f"{families.pop()}:{','.join(targets)}"


def _family(address: str, field: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{field}: {address!r} is not host:port")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(
            f"{field}: {address!r}: several gateways must be given as IP addresses "
            "(or give one DNS name whose A records are the gateways)"
        ) from None
    return "ipv4" if ip.version == 4 else "ipv6"


async def authorize_on_fleet(
    stub: pb_grpc.AuthorizationStub, req: pb.AuthorizeRequest, *, timeout_s: float, attempts: int
) -> pb.AuthorizeResponse:
    """Authorize through a round_robin channel, up to `attempts` sends within one deadline.

    Only RETRY_ELSEWHERE is sent again; any other status, or the last refusal, is raised.
    """
    deadline = time.monotonic() + timeout_s
    for attempt in range(1, attempts + 1):
        try:
            resp: pb.AuthorizeResponse = await stub.Authorize(
                req, timeout=max(0.001, deadline - time.monotonic())
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRY_ELSEWHERE or attempt == attempts or time.monotonic() >= deadline:
                raise
            continue
        return resp
    raise AssertionError("unreachable: the last attempt returns or raises")
