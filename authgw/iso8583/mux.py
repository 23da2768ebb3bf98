"""Client-side multiplexer (jPOS's QMUX): many requests in flight on one connection, replies matched by key.

What it promises:

- `request()` returns the reply whose `MatchKey` (reply MTI, STAN, RRN or field 7) is the
  request's, in whatever order replies arrive; or raises MatchTimeout after its timeout,
  ConnectionClosed when the connection drops or was closed (`request_sent` says whether it
  reached the wire), FormatError when the matching reply broke the format (or the request
  does), FramingError when the request is larger than the link's frames (nothing sent).
- A reply nobody waits for (late, unknown, undecodable without keys) is counted in
  `unmatched` and logged, never delivered. An 0800 from the peer is answered (0810, 00).
- With `EchoConfig`, an idle connection is probed with 0800/301; an unanswered echo closes
  the mux with that reason, and `wait_closed()` returns: the caller decides what it means
  (a pool member reports itself failed).

Lifecycle: `async with Mux(...)`, or `start()`, then `close()` (idempotent: fails what is
pending, cancels and awaits its two tasks, closes the connection); `wait_closed()` returns
once the mux is closed, whoever closed it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from authgw.iso8583.channel import Channel
from authgw.iso8583.errors import (
    ConfigError,
    ConnectionClosed,
    FormatError,
    FramingError,
    MatchTimeout,
    MuxError,
)
from authgw.iso8583.framing import Frame, Tpdu
from authgw.iso8583.message import (
    APPROVED,
    MatchKey,
    Message,
    NetworkCode,
    StanSequence,
    build_reply,
    error_match_key,
    network_request,
)
from authgw.iso8583.spec import Spec

__all__ = ["EchoConfig", "Mux"]

log = logging.getLogger("authgw.iso8583.mux")


@dataclass(frozen=True, slots=True)
class EchoConfig:
    """Idle echo: detect a peer that keeps the connection open but no longer answers."""

    idle_s: float = 30.0  # send an 0800/301 after this long without a frame from the peer
    timeout_s: float = 5.0  # an echo unanswered for this long closes the mux

    def __post_init__(self) -> None:
        if self.idle_s <= 0 or self.timeout_s <= 0:
            raise ConfigError("echo", "idle_s and timeout_s must be positive", "e.g. idle_s=30, timeout_s=5")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Mux:
    """Multiplexes requests over one `Channel`.

    Args:
        tpdu: the TPDU this side puts on its requests, on links framed with one.
        clock: the time written in field 7 of echoes.
        stans: STANs for echoes; share the caller's sequence so echoes never reuse its STANs.
    """

    def __init__(
        self,
        channel: Channel,
        spec: Spec,
        *,
        echo: EchoConfig | None = None,
        tpdu: Tpdu | None = None,
        clock: Callable[[], datetime] = _utc_now,
        stans: StanSequence | None = None,
    ) -> None:
        if (tpdu is not None) != channel.framing.tpdu:
            raise ConfigError(
                "tpdu", "must be given exactly when the framing has a TPDU", "match Framing.tpdu"
            )
        self._channel = channel
        self._spec = spec
        self._echo = echo
        self._tpdu = tpdu
        self._clock = clock
        self._stans = stans or StanSequence()
        self._state = _State.NEW
        self._pending: dict[MatchKey, asyncio.Future[Message]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        self._reason: ConnectionClosed | None = None
        self._unmatched = 0
        self._last_frame_at = 0.0
        self._echo_failed = False

    @property
    def unmatched(self) -> int:
        """Frames received that matched no waiting request (late, unknown or unreadable)."""
        return self._unmatched

    @property
    def in_flight(self) -> int:
        """Requests waiting for their reply."""
        return len(self._pending)

    @property
    def echo_failed(self) -> bool:
        """Whether the mux closed because the peer left an echo unanswered (a hung peer, not a gone one)."""
        return self._echo_failed

    @property
    def close_reason(self) -> ConnectionClosed | None:
        """Why the mux closed (peer gone, echo unanswered, framing error, close()), or None while open."""
        return self._reason

    async def __aenter__(self) -> Mux:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start reading replies (and echoing, if configured); a mux is started once."""
        if self._state is not _State.NEW:
            raise MuxError(f"a mux is started once (it is {self._state.value})")
        self._state = _State.OPEN
        self._last_frame_at = asyncio.get_running_loop().time()
        self._spawn(self._read_loop(), "read")
        if self._echo is not None:
            self._spawn(self._echo_loop(self._echo), "echo")

    async def request(self, message: Message, timeout_s: float) -> Message:
        """Send a request and return its reply; the timeout covers sending and waiting."""
        if self._state is not _State.OPEN:
            if self._reason is not None:
                raise ConnectionClosed(self._reason.reason, request_sent=False)
            raise MuxError("the mux is not started")
        if not message.is_request:
            raise MuxError(f"{message.mti} is not a request: only requests are multiplexed")
        key = message.match_key
        payload = message.encode(self._spec)
        if key in self._pending:
            raise MuxError(f"a request with key {key} is already in flight")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            async with asyncio.timeout(timeout_s):
                await self._channel.write(Frame(payload, self._tpdu))
                return await future
        except TimeoutError:
            raise MatchTimeout(f"no reply to {key} within {timeout_s} s") from None
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a result raced by our own cancellation is not an error

    async def close(self) -> None:
        """Fail every pending request, stop the tasks, close the connection; safe to call twice."""
        self._shutdown(ConnectionClosed("the mux was closed"))
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Return once the mux is closed (by close(), the peer, a framing error or an unanswered echo)."""
        await self._closed.wait()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks)
        await self._channel.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"iso8583-mux-{name}-{self._channel.peer}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("mux task %s failed", task.get_name(), exc_info=task.exception())
            self._shutdown(ConnectionClosed(f"internal error in {task.get_name()}"))

    def _shutdown(self, reason: ConnectionClosed) -> None:
        """Move to CLOSED once: fail the pending requests, cancel the other task, close the connection."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._reason = reason
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionClosed(reason.reason, request_sent=True))
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._channel.close()
        self._closed.set()
        if pending:
            log.warning(
                "mux to %s closed with %d requests pending: %s", self._channel.peer, len(pending), reason
            )

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        reason = ConnectionClosed("the read loop ended")
        try:
            while True:
                frame = await self._channel.read()
                self._last_frame_at = loop.time()
                await self._dispatch(frame)
        except ConnectionClosed as exc:
            reason = exc
        except FramingError as exc:
            log.warning("framing error from %s, closing: %s", self._channel.peer, exc)
            reason = ConnectionClosed(f"framing error: {exc}")
        finally:
            self._shutdown(reason)

    async def _dispatch(self, frame: Frame) -> None:
        try:
            message = Message.decode(frame.payload, self._spec)
        except FormatError as exc:
            self._deliver_error(exc)
            return
        if message.is_request:
            await self._answer_peer(message, frame.tpdu)
            return
        future = self._pending.pop(message.match_key, None)
        if future is None or future.done():
            self._unmatched += 1
            log.warning("unmatched reply %s from %s (late or unknown)", message.match_key, self._channel.peer)
            return
        future.set_result(message)

    def _deliver_error(self, error: FormatError) -> None:
        """A reply that broke the format goes to its waiting request when its keys could be read."""
        key = error_match_key(error)
        future = self._pending.pop(key, None) if key is not None else None
        if future is None or future.done():
            self._unmatched += 1
            log.warning("unreadable frame from %s matches no request: %s", self._channel.peer, error)
            return
        future.set_exception(error)

    async def _answer_peer(self, request: Message, tpdu: Tpdu | None) -> None:
        if request.mti != "0800":
            self._unmatched += 1
            log.warning("unsolicited %s from %s ignored", request.mti, self._channel.peer)
            return
        reply = build_reply(request, APPROVED)
        await self._channel.write(Frame(reply.encode(self._spec), tpdu.reply() if tpdu else None))

    async def _echo_loop(self, echo: EchoConfig) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle = loop.time() - self._last_frame_at
            if idle < echo.idle_s:
                await asyncio.sleep(echo.idle_s - idle)
                continue
            probe = network_request(NetworkCode.ECHO, self._stans.next(), self._clock())
            try:
                reply = await self.request(probe, echo.timeout_s)
            except MatchTimeout:
                self._echo_failed = True
                self._shutdown(ConnectionClosed(f"the peer did not answer an echo within {echo.timeout_s} s"))
                return
            except ConnectionClosed:
                return
            except (FormatError, MuxError) as exc:
                # The peer answered (garbled) or our STAN is taken: it is alive; probe again later.
                log.warning("echo to %s: %s", self._channel.peer, exc)
                self._last_frame_at = loop.time()
                continue
            if reply.fields.get(39) != APPROVED:
                log.warning("echo to %s answered %s", self._channel.peer, reply.fields.get(39))
