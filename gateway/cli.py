"""The `authgw` command: one entry point, one sub-command per role.

Each sub-command lives in the package that owns the role and exposes
`main(argv: list[str]) -> int`; this module only dispatches, importing lazily
so that `authgw health-agent` does not pay for the gateway's imports. The issuer simulator is the
harness's (`python -m chaos issuer-sim`), not a product command.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("gateway.serve", "run the gateway (gRPC Authorization service)"),
    "authorize": ("gateway.client", "send one authorization and print the answer as JSON"),
    "iso8583": (
        "gateway.iso8583_cmd",
        "iso8583 send: one ISO 8583 message from flags, the reply field by field",
    ),
    "health-agent": ("health.agent", "hold a pool member's etcd lease while its host is healthy"),
    "pools": ("health.admin", "print pools, members and live gateways from etcd"),
    "drain": ("health.admin", "stop routing new requests to a pool"),
    "undrain": ("health.admin", "route to a drained pool again"),
    "mode": ("health.admin", "set /authgw/mode: auto | force-standin | force-issuer"),
    "audit": ("health.admin", "list the operators' audited writes (drain, undrain, mode)"),
    "etcd-auth": ("health.admin", "create etcd users and roles from the key layout, enable auth (as root)"),
    "standin": ("gateway.standin_cmd", "stand-in tools: load-card-status, status, reconcile, replay, policy"),
    "settle": ("gateway.settlement.command", "run a settlement worker alone"),
    "top": ("gateway.top.command", "live view of gateways: mode, pools, answers/s, p99, stand-in, journal"),
}


def usage() -> str:
    lines = ["usage: authgw <command> [options]", "", "commands:"]
    lines += [f"  {name:<14}{text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"authgw: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    code: int = module.main([command, *rest])
    return code


if __name__ == "__main__":
    sys.exit(main())
