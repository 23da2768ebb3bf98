"""First SIGTERM/SIGINT asks for an orderly stop; a second one exits at once (grpclib's graceful_exit)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

__all__ = ["stop_on_signals"]

log = logging.getLogger("authgw.signals")


def stop_on_signals(what: str) -> asyncio.Event:
    """An event set by the first SIGTERM/SIGINT on the running loop; the second exits the process."""
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second %s: exiting now", name)
            os._exit(1)
        log.info("%s: %s", name, what)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop
