"""Policy and config loading: the example file, defaults, and errors naming file, key and fix."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_standin_support import ENV

from authgw.config import Section
from standin import (
    Channel,
    ConfigError,
    PolicyError,
    RiskTier,
    StandInPolicy,
    WindowLimit,
    load_config,
    load_policy,
)
from standin.policy_load import policy_from_section

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "standin.example.toml"


def from_table(table: dict[str, Any]) -> StandInPolicy:
    return policy_from_section(Section("test.toml", "policy", table, PolicyError))


PLAINTEXT_REDIS = "[redis]\ninsecure = true\n"  # the file's other errors are what these tests are about


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "standin.toml"
    path.write_text(text)
    return path


def test_example_file_documents_the_defaults() -> None:
    """config/standin.example.toml loads to exactly the built-in default policy."""
    assert load_policy(EXAMPLE) == StandInPolicy()


def test_example_config_loads_with_secrets_from_env() -> None:
    """The example config loads; keys come from the environment; sqlite_path is relative to the file."""
    config = load_config(EXAMPLE, ENV)
    assert config.pan_key == base64.b64decode(ENV["AUTHGW_PAN_KEY"])
    assert config.sqlite_path == EXAMPLE.parent / "standin.sqlite3"
    assert "pan_key" not in repr(config).split("local=")[1]  # secrets stay out of repr


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    """A file without [policy] gets the default policy."""
    assert load_policy(write(tmp_path, "")) == StandInPolicy()


def test_error_names_file_key_and_fix(tmp_path: Path) -> None:
    """A negative limit is refused with the file, the dotted key and how to fix it."""
    path = write(tmp_path, "[policy.window.purchase]\nmax_amount_minor = -5\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert (info.value.file, info.value.key) == (str(path), "policy.window.purchase.max_amount_minor")
    assert str(path) in str(info.value) and "fix: use a value between 0 and" in str(info.value)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key is an error listing the known ones, not silently ignored."""
    with pytest.raises(PolicyError, match="home_country") as info:
        load_policy(write(tmp_path, '[policy]\nhome_contry = "FR"\n'))
    assert info.value.key == "policy.home_contry"


def test_unknown_channel_is_refused(tmp_path: Path) -> None:
    """A channel that does not exist is refused, listing the valid ones."""
    with pytest.raises(PolicyError, match="POS_CHIP") as info:
        load_policy(write(tmp_path, "[policy.txn_max_minor.channel]\nPOS_CHIPS = 100\n"))
    assert info.value.key == "policy.txn_max_minor.channel.POS_CHIPS"


def test_mcc_in_two_groups_is_refused(tmp_path: Path) -> None:
    """One MCC may belong to one group only."""
    with pytest.raises(PolicyError, match="5411"):
        load_policy(write(tmp_path, '[policy.mcc_groups]\na = ["5411"]\nb = ["5400-5420"]\n'))


def test_blocked_group_must_exist(tmp_path: Path) -> None:
    """Blocking an undefined MCC group is refused with the key and a fix."""
    with pytest.raises(PolicyError, match=r"policy\.mcc_groups") as info:
        load_policy(write(tmp_path, '[policy]\nblocked_mcc_groups = ["casino"]\n'))
    assert info.value.key == "policy.blocked_mcc_groups"


def test_riskier_tier_cannot_get_more(tmp_path: Path) -> None:
    """Tiers must not increase their limit scale as risk grows."""
    text = (
        '[[policy.tiers]]\nname = "a"\nlimit_scale = 0.5\n[[policy.tiers]]\nname = "b"\nlimit_scale = 0.8\n'
    )
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, text))
    assert info.value.key == "policy.tiers[1].limit_scale"


@pytest.mark.parametrize("value", [0.5, 10.5, "2", True])
def test_a_known_balance_scale_outside_1_to_10_is_refused(value: object) -> None:
    """limit_scale under 1 would make a known balance approve less than the policy (its job is the
    other way round), over 10 is a typo: refused naming policy.known_balance.limit_scale."""
    with pytest.raises(PolicyError) as info:
        from_table({"known_balance": {"limit_scale": value}})
    assert info.value.key == "policy.known_balance.limit_scale"
    assert from_table({"known_balance": {"limit_scale": 2}}).known_balance_scale == 2.0


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    """A syntax error names the file."""
    path = write(tmp_path, "[policy\n")
    with pytest.raises(PolicyError, match=str(path)):
        load_policy(path)


def test_configured_group_takes_its_mccs_from_the_defaults(tmp_path: Path) -> None:
    """A group named in the file owns its MCCs; the default group loses them."""
    pol = load_policy(write(tmp_path, '[policy.mcc_groups]\nunattended_fuel = ["5542"]\n'))
    assert (pol.mcc_group("5542"), pol.mcc_group("5541")) == ("unattended_fuel", "fuel")


def test_mcc_ranges_expand(tmp_path: Path) -> None:
    """A range such as 7800-7802 puts every MCC in it in the group."""
    pol = load_policy(write(tmp_path, '[policy.mcc_groups]\nlottery = ["7800-7802"]\n'))
    assert {pol.mcc_group(m) for m in ("7800", "7801", "7802")} == {"lottery"}


def test_missing_secret_names_the_env_variable(tmp_path: Path) -> None:
    """Without AUTHGW_PAN_KEY the error says which variable to set and how to make a key."""
    with pytest.raises(ConfigError, match=r"\$AUTHGW_PAN_KEY.*urandom"):
        load_config(write(tmp_path, PLAINTEXT_REDIS), {"AUTHGW_TOKEN_KEY": ENV["AUTHGW_TOKEN_KEY"]})


def test_pan_key_must_be_32_bytes(tmp_path: Path) -> None:
    """An AES key of the wrong size is refused."""
    env = {**ENV, "AUTHGW_PAN_KEY": base64.b64encode(b"short").decode()}
    with pytest.raises(ConfigError, match="exactly 32"):
        load_config(write(tmp_path, PLAINTEXT_REDIS), env)


# -- properties ------------------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=10**12)
counts = st.integers(min_value=0, max_value=10_000)
scales = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=6).map(
    lambda xs: sorted(xs, reverse=True)
)
channel_maxima = st.dictionaries(st.sampled_from([c.value for c in Channel]), amounts)


@given(amounts, counts, amounts, counts, channel_maxima, scales)
def test_valid_values_load_as_given(
    p_amount: int, p_count: int, c_amount: int, c_count: int, maxima: dict[str, int], tier_scales: list[float]
) -> None:
    """Any in-range limits, channel maxima and non-increasing tiers load to exactly those values."""
    table = {
        "window": {
            "purchase": {"max_amount_minor": p_amount, "max_count": p_count},
            "cash": {"max_amount_minor": c_amount, "max_count": c_count},
        },
        "txn_max_minor": {"channel": maxima},
        "tiers": [{"name": f"t{i}", "limit_scale": s} for i, s in enumerate(tier_scales)],
    }
    pol = from_table(table)
    assert (pol.purchase, pol.cash) == (WindowLimit(p_amount, p_count), WindowLimit(c_amount, c_count))
    assert all(pol.txn_max_minor_by_channel[Channel(c)] == v for c, v in maxima.items())
    assert pol.tiers == tuple(RiskTier(f"t{i}", s) for i, s in enumerate(tier_scales))


NUMERIC_KEYS = [
    ("window", "purchase", "max_amount_minor"),
    ("window", "cash", "max_count"),
    ("txn_max_minor", "channel", "ATM"),
    ("txn_max_minor", "mcc_group", "fuel"),
    ("risk_points", "foreign_merchant"),
    ("risk_points", "mcc_group", "other"),
    ("window_length",),
]
bad_values = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=10**16),
    st.text(max_size=5),
    st.booleans(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
)


@given(st.sampled_from(NUMERIC_KEYS), bad_values)
def test_bad_value_is_refused_naming_its_key(path: tuple[str, ...], value: object) -> None:
    """A wrong-typed or out-of-range number anywhere is a PolicyError naming exactly that key."""
    table: dict[str, Any] = {}
    node = table
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    with pytest.raises(PolicyError) as info:
        from_table(table)
    assert info.value.key == "policy." + ".".join(path)
    assert info.value.fix


@given(st.text(alphabet="0123456789-ab", min_size=1, max_size=10))
def test_mcc_entries_are_mccs_or_ranges(item: str) -> None:
    """An MCC entry loads only if it is 4 digits or an ascending range of them; otherwise it is refused."""
    try:
        pol = from_table({"mcc_groups": {"g": [item]}})
    except PolicyError as exc:
        assert exc.key == "policy.mcc_groups.g"
    else:
        low, _, high = item.partition("-")
        assert low.isdigit() and len(low) == 4 and pol.mcc_group(low) == "g"
        assert not high or (high.isdigit() and len(high) == 4 and high >= low)
