"""Unit tests of the health package's pure parts: records, key layout, hysteresis, static source."""

from __future__ import annotations

import pytest

import health
from health.errors import InvalidName, MalformedRecord
from health.etcd import Endpoint, parse_endpoints
from health.keys import DrainKey, GatewayKey, KeyLayout, MemberKey, ModeKey
from health.membership import GatewayInfo, MemberInfo, Membership, Mode, StaticMembership
from health.probe import RiseFall, Transition

LAYOUT = KeyLayout("/authgw")


def test_public_api_is_sorted_and_importable() -> None:
    """health.__all__ is sorted and every name in it exists."""
    assert list(health.__all__) == sorted(health.__all__)
    assert all(hasattr(health, name) for name in health.__all__)


def test_member_info_round_trips_through_json() -> None:
    """A member record decodes to what was encoded."""
    info = MemberInfo(address="10.0.0.1:7000", zone="par1", weight=3, version="2.4.1")
    assert MemberInfo.from_json(info.to_json()) == info


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"address": 7}', b'{"address": "nohost"}', b'{"address": "h:1", "weight": "x"}'],
)
def test_member_info_rejects_malformed_values(raw: bytes) -> None:
    """A malformed member value raises MalformedRecord, never a bare JSON or type error."""
    with pytest.raises(MalformedRecord):
        MemberInfo.from_json(raw)


def test_mode_parse_names_the_bad_value() -> None:
    """An unknown mode is refused with its value and the accepted ones in the message."""
    assert Mode.parse("force-standin") is Mode.FORCE_STANDIN
    with pytest.raises(InvalidName, match=r"'sometimes'.*auto, force-standin, force-issuer"):
        Mode.parse("sometimes")


def test_layout_parses_each_record_kind() -> None:
    """Every key of the layout parses to its record; foreign keys parse to None."""
    assert LAYOUT.parse("/authgw/pools/primary/members/h1") == MemberKey("primary", "h1")
    assert LAYOUT.parse("/authgw/pools/primary/drain") == DrainKey("primary")
    assert LAYOUT.parse("/authgw/mode") == ModeKey()
    assert LAYOUT.parse("/authgw/gateways/gw-1") == GatewayKey("gw-1")
    assert LAYOUT.parse("/authgw/pools/primary/members/h1/extra") is None
    assert LAYOUT.parse("/authgwx/mode") is None


def test_layout_refuses_names_that_would_escape_their_segment() -> None:
    """A pool name with a slash cannot address another key."""
    with pytest.raises(InvalidName, match="pool"):
        LAYOUT.drain("a/members/b")


def test_fold_builds_pools_and_skips_malformed_records() -> None:
    """Folding keys gives pools, drain flags, mode and gateways; a bad record is skipped, not fatal."""
    entries = {
        LAYOUT.member("primary", "h1"): MemberInfo(address="h1:1").to_json(),
        LAYOUT.member("primary", "h2"): b"garbage",
        LAYOUT.drain("secondary"): b"{}",
        LAYOUT.mode(): b"force-issuer",
        LAYOUT.gateway("gw-1"): GatewayInfo(address="gw:1").to_json(),
    }
    membership = LAYOUT.fold(entries, revision=7, etcd_connected=True)
    assert list(membership.pools["primary"].members) == ["h1"]
    assert membership.pools["secondary"].drained and not membership.pools["secondary"].members
    assert membership.mode is Mode.FORCE_ISSUER
    assert list(membership.gateways) == ["gw-1"]
    assert (membership.revision, membership.etcd_connected) == (7, True)


def test_rise_fall_needs_consecutive_results() -> None:
    """UP needs `rise` good probes in a row, DOWN `fall` bad ones; a single blip changes nothing."""
    health_state = RiseFall(rise=2, fall=2)
    assert [health_state.observe(ok) for ok in (True, False, True, True)] == [None, None, None, Transition.UP]
    assert [health_state.observe(ok) for ok in (False, True, False, False)] == [
        None,
        None,
        None,
        Transition.DOWN,
    ]


def test_parse_endpoints_accepts_urls_and_bare_addresses() -> None:
    """--etcd takes a comma-separated list of https / http URLs or host:port, keeping the scheme."""
    parsed = parse_endpoints("http://127.0.0.1:2379, 10.0.0.2:2380,https://etcd.example:2379")
    assert parsed == (Endpoint("127.0.0.1", 2379), Endpoint("10.0.0.2", 2380), Endpoint("etcd.example", 2379))
    assert [e.scheme for e in parsed] == ["http", "", "https"]
    with pytest.raises(InvalidName, match="unix://x:1"):
        parse_endpoints("unix://x:1")


def test_static_membership_notifies_on_content_change_only() -> None:
    """StaticMembership calls listeners when pools change, not for a revision-only change."""
    seen: list[Membership] = []
    source = StaticMembership(Membership.seed({"primary": {"h1": "h1:1"}}))
    remove = source.add_listener(seen.append)
    same = source.snapshot()
    source.set(Membership(pools=same.pools, revision=9))
    changed = Membership.seed({"primary": {}})
    source.set(changed)
    remove()
    source.set(Membership())
    assert seen == [changed]


def test_failing_listener_does_not_stop_the_others() -> None:
    """A listener that raises is logged; the next listener still gets the snapshot."""
    seen: list[Membership] = []

    def broken(_: Membership) -> None:
        raise RuntimeError("router bug")

    source = StaticMembership()
    source.add_listener(broken)
    source.add_listener(seen.append)
    source.set(Membership(mode=Mode.FORCE_STANDIN))
    assert [m.mode for m in seen] == [Mode.FORCE_STANDIN]
