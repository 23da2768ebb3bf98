"""`authgw standin ...`: stand-in's operator tools, reading the gateway's own config file.

`--config` names the gateway's TOML file: its `[standin]` section gives the stand-in file,
the Redis URL override and this instance's local journal, so `status`, `reconcile` and
`replay` look at exactly what the gateway writes. A stand-in file given directly (no
`[gateway]`, `[[pools]]` or `[standin] config`) still works, with the file's own paths.
"""

from __future__ import annotations

from pathlib import Path

from authgw.config import ConfigError, read_toml
from gateway.config import load_config
from standin import StandInConfig
from standin import load_config as load_standin_config
from standin.cli import main as standin_main

__all__ = ["load_standin_for_operator", "main"]


def load_standin_for_operator(path: Path) -> StandInConfig:
    """The stand-in config the gateway configured by `path` uses (or `path` itself, a stand-in file)."""
    root = read_toml(path)
    is_gateway = any(root.has(k) for k in ("gateway", "pools", "routing", "etcd")) or root.table(
        "standin"
    ).has("config")
    if not is_gateway:
        return load_standin_config(path)
    cfg = load_config(path)
    if cfg.standin is None:
        raise ConfigError(
            str(path), "standin", "this gateway has no stand-in", 'add [standin] config = "..."'
        )
    return cfg.standin


def main(argv: list[str]) -> int:
    return standin_main(argv, load=load_standin_for_operator)
