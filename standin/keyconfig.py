"""The `[keys]` section: the card-token key and the PAN keys (current and retired), from env or files.

    [keys]
    token_key_env = "AUTHGW_TOKEN_KEY"      # HMAC key of card tokens (>= 32 bytes, base64)
    # token_key_file = "/run/secrets/authgw-token-key"
    pan_key_env = "AUTHGW_PAN_KEY"          # the current PAN key: seals every new journal entry
    # pan_key_file = "/run/secrets/authgw-pan-key"
    # pan_key_id = "3f9a01c2"               # optional: refuse to start unless the key has this id
    retired_pan_keys = [                    # keys of a past rotation, opening older entries only
      { id = "9c1e22aa", env = "AUTHGW_PAN_KEY_2025" },
      { id = "0b77d410", file = "/run/secrets/authgw-pan-key-2024" },
    ]

A secret is base64 text of random bytes, given by an environment variable (the default
name, or `*_env`), a file (`*_file`: the whole file, surrounding whitespace ignored; the
way container and systemd credentials arrive), or inline (`*_b64`, development only). For
the current keys the environment wins over the file, the file over the inline value. A
retired key takes exactly one of `env`, `file`, `b64`, and its `id` (the first 8 hex
digits of SHA-256 of the key, as journal entries record it: standin/crypto.py) must match
the key: a key put in the wrong slot is refused at load instead of failing at settlement.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from authgw.config import Section
from standin.crypto import pan_key_id

__all__ = ["KEYGEN", "Keys", "read_keys"]

KEYGEN = 'generate one with: python -c "import base64,os;print(base64.b64encode(os.urandom(32)).decode())"'
_KEY_ID = r"[0-9a-f]{8}"
_PAN_KEY_BYTES = 32


@dataclass(frozen=True)
class Keys:
    """The secrets of stand-in (repr shows ids only)."""

    token_key: bytes = field(repr=False)
    pan_key: bytes = field(repr=False)
    retired_pan_keys: tuple[bytes, ...] = field(repr=False, default=())

    @property
    def pan_key_ids(self) -> tuple[str, ...]:
        """The current PAN key's id, then the retired ones'."""
        return (pan_key_id(self.pan_key), *(pan_key_id(k) for k in self.retired_pan_keys))


def read_keys(s: Section, env: Mapping[str, str]) -> Keys:
    """Read `[keys]` (section `s`), taking environment variables from `env`."""
    s.check_known(
        [
            "token_key_env", "token_key_file", "token_key_b64",
            "pan_key_env", "pan_key_file", "pan_key_b64", "pan_key_id", "retired_pan_keys",
        ]
    )  # fmt: skip
    token = _current(s, env, "token", min_bytes=32, max_bytes=1024)
    pan = _current(s, env, "pan", min_bytes=_PAN_KEY_BYTES, max_bytes=_PAN_KEY_BYTES)
    expected = s.string("pan_key_id", "", pattern=f"(?:{_KEY_ID})?", fix="8 lowercase hex digits")
    if expected and pan_key_id(pan) != expected:
        s.fail(
            "pan_key_id",
            f"the PAN key given has id {pan_key_id(pan)}, not {expected}",
            "give the key this id names, or correct the id",
        )
    retired = [_retired(r, env) for r in s.tables("retired_pan_keys")]
    seen = {pan_key_id(pan): "the current key"}
    for i, key in enumerate(retired):
        key_id = pan_key_id(key)
        if key_id in seen:
            s.fail(f"retired_pan_keys[{i}]", f"key {key_id} is also {seen[key_id]}", "list each key once")
        seen[key_id] = f"retired_pan_keys[{i}]"
    return Keys(token, pan, tuple(retired))


def _current(s: Section, env: Mapping[str, str], which: str, *, min_bytes: int, max_bytes: int) -> bytes:
    env_name = s.string(f"{which}_key_env", f"AUTHGW_{which.upper()}_KEY", pattern=r"[A-Z_][A-Z0-9_]*")
    file = s.path(f"{which}_key_file")
    where = f"{which}_key_b64 (or ${env_name}, or {which}_key_file)"
    if env.get(env_name):
        text, where = env[env_name], f"${env_name}"
    elif file is not None:
        text, where = _read_file(s, f"{which}_key_file", file), f"{which}_key_file ({file})"
    else:
        text = s.string(f"{which}_key_b64", "")
    if not text:
        s.fail(where, "missing secret", f"set ${env_name}; {KEYGEN}")
    return _decode(s, where, text, min_bytes=min_bytes, max_bytes=max_bytes)


def _retired(r: Section, env: Mapping[str, str]) -> bytes:
    r.check_known(["id", "env", "file", "b64"])
    key_id = r.string("id", "", pattern=_KEY_ID, fix="8 lowercase hex digits, as journal entries record it")
    if not key_id:
        r.fail("id", "missing", "write the key's id (`authgw standin status` lists the ids entries use)")
    sources = [name for name in ("env", "file", "b64") if r.has(name)]
    if len(sources) != 1:
        problem = f"needs exactly one of env, file, b64 (got {len(sources)})"
        r.fail("", problem, 'e.g. env = "AUTHGW_PAN_KEY_OLD"')
    source = sources[0]
    if source == "env":
        name = r.string("env", "", pattern=r"[A-Z_][A-Z0-9_]*")
        text, where = env.get(name, ""), f"env (${name})"
        if not text:
            r.fail("env", f"${name} is not set", "export the retired key there, or remove this entry")
    elif source == "file":
        file = r.path("file")
        assert file is not None  # present: checked above
        text, where = _read_file(r, "file", file), f"file ({file})"
    else:
        text, where = r.string("b64", ""), "b64"
    key = _decode(r, where, text, min_bytes=_PAN_KEY_BYTES, max_bytes=_PAN_KEY_BYTES)
    if pan_key_id(key) != key_id:
        r.fail(
            where,
            f"this key has id {pan_key_id(key)}, not {key_id}",
            "give the retired key whose id is listed, or correct the id",
        )
    return key


def _read_file(s: Section, name: str, path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not base64 text"
        s.fail(name, f"cannot read {path}: {reason}", "write the key there as one line of base64")


def _decode(s: Section, where: str, text: str, *, min_bytes: int, max_bytes: int) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        s.fail(where, "not valid base64", KEYGEN)
    if not min_bytes <= len(key) <= max_bytes:
        size = f"exactly {min_bytes}" if min_bytes == max_bytes else f"at least {min_bytes}"
        s.fail(where, f"decodes to {len(key)} bytes, needs {size}", KEYGEN)
    return key
