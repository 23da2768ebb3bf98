"""`python -m chaos <command>`: the harness's own commands, run from a source checkout.

The product's `authgw` command does not ship the harness; the issuer simulator
lives here:

    python -m chaos issuer-sim --listen 127.0.0.1:7001 --pool primary --member a1
    python -m chaos bench-floor --listen 127.0.0.1:7100 --primary 127.0.0.1:7001 --backup ...
"""

from __future__ import annotations

import sys

from chaos import bench_floor, issuer_sim


def _bench_floor(argv: list[str]) -> int:
    return bench_floor.main(argv[1:])


COMMANDS = {"issuer-sim": issuer_sim.main, "bench-floor": _bench_floor}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m chaos {{{' | '.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
