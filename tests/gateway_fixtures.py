"""Builders for gateway tests: configs, requests, in-process gateways on free ports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from authgw.v1 import authorization_pb2 as pb
from chaos.pki import PLAINTEXT
from chaos.processes import free_port
from gateway.config import GatewayConfig, parse_config
from tests.helpers import PAN_VISA


def gateway_config(
    pools: Sequence[tuple[str, Sequence[str]]],
    *,
    port: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """A config with pools given as (name, [addresses]) in priority order."""
    data: dict[str, Any] = {
        "gateway": {
            "listen": f"127.0.0.1:{port or free_port()}",
            "instance": "gw-test",
            "drain_timeout": "2s",
        },
        "pools": [
            {
                "name": name,
                "priority": i + 1,
                "members": [{"name": f"{name}-{j}", "address": a} for j, a in enumerate(addresses)],
            }
            for i, (name, addresses) in enumerate(pools)
        ],
    }
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    for section, values in PLAINTEXT.items():  # these tests are about routing: TLS has its own
        data.setdefault(section, dict(values))
    return parse_config(data, "<test>")


def auth_request(**overrides: Any) -> pb.AuthorizeRequest:
    """A valid request; keyword arguments replace fields."""
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "acquirer_id": "1001",
        "pan": PAN_VISA,
        "amount_minor": 1234,
        "currency": "EUR",
        "mcc": "5411",
        "channel": pb.POS_CHIP,
        "merchant_id": "M1",
        "terminal_id": "T1",
        "merchant_country": "FR",
        "pin_verified": True,
    }
    fields.update(overrides)
    return pb.AuthorizeRequest(**fields)
