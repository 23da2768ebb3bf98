"""Server side of one accepted connection: requests in, handled concurrently, replies out as they complete.

What it promises:

- Each decoded request goes to the handler in its own task (at most `max_in_flight` at a
  time: past that, reading waits); each reply is written as soon as it is ready, one frame
  at a time, with the request's TPDU swapped.
- A frame that breaks the format does not end the connection: the format-error handler
  gets the FormatError (its `mti` and `keys`, when readable) and may answer; the default
  answers 30 when the request can be matched (`reply_to_format_error`).
- A handler that raises, or returns a reply that breaks the format, is a bug: it is logged
  and the request answered 96 (a format-error handler's failure sends nothing).
- Network management (0800) goes to the handler like any request: sign-on and sign-off
  mean something to the application; an echo is `build_reply(request, APPROVED)`.
- Replies (0110, ...) arriving on a listener are logged and dropped.
- The connection ends, and only it, on a framing error, the peer closing, an idle peer
  (no frame for `idle_timeout_s` while nothing is in flight) or `close()`.

Lifecycle: `await conn.serve()` runs until the connection ends and returns only after
every started handler finished and its reply was written (handlers carry their own
deadlines); `close()` stops reading at once; cancelling `serve()` cancels the handlers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from authgw.iso8583.channel import Channel
from authgw.iso8583.errors import ConnectionClosed, FormatError, FramingError
from authgw.iso8583.framing import Frame
from authgw.iso8583.message import SYSTEM_MALFUNCTION, Message, build_reply, reply_to_format_error
from authgw.iso8583.spec import Spec

__all__ = ["FormatErrorHandler", "RequestHandler", "ServerConnection", "answer_format_error"]

log = logging.getLogger("authgw.iso8583.server")

RequestHandler = Callable[[Message], Awaitable[Message | None]]
"""Answers one request; None sends no reply (an advice already answered elsewhere, say)."""
FormatErrorHandler = Callable[[FormatError], Awaitable[Message | None]]
"""Answers a frame that broke the format; None sends no reply."""


async def answer_format_error(error: FormatError) -> Message | None:
    """The default: a 30 reply when the request's MTI and keys could be read."""
    return reply_to_format_error(error)


class ServerConnection:
    """Serves ISO 8583 requests arriving on one connection.

    Args:
        idle_timeout_s: close when the peer sends nothing for this long and nothing is in flight.
        max_in_flight: requests handled at once on this connection; more wait unread.
    """

    def __init__(
        self,
        channel: Channel,
        spec: Spec,
        handler: RequestHandler,
        *,
        on_format_error: FormatErrorHandler = answer_format_error,
        idle_timeout_s: float = 120.0,
        max_in_flight: int = 256,
    ) -> None:
        self._channel = channel
        self._spec = spec
        self._handler = handler
        self._on_format_error = on_format_error
        self._idle_timeout_s = idle_timeout_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._in_flight = 0
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def peer(self) -> str:
        """The peer's address, for logs."""
        return self._channel.peer

    @property
    def in_flight(self) -> int:
        """Requests being handled now."""
        return self._in_flight

    async def serve(self) -> None:
        """Serve until the connection ends; expected failures end it quietly, they are not raised."""
        try:
            async with asyncio.TaskGroup() as handlers:
                self._reader = handlers.create_task(self._read_loop(handlers))
                if self._closed:
                    self._reader.cancel()
        finally:
            await self._channel.wait_closed()

    def close(self) -> None:
        """Stop reading; requests already read are still answered. Idempotent."""
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()

    async def _read_loop(self, handlers: asyncio.TaskGroup) -> None:
        while True:
            await self._slots.acquire()
            try:
                frame = await self._channel.read(idle_timeout_s=self._idle_timeout_s)
            except TimeoutError:
                self._slots.release()
                if self._in_flight:
                    continue  # the peer is waiting for us, not silent
                log.info("closing %s: no frame for %s s", self.peer, self._idle_timeout_s)
                return
            except FramingError as exc:
                log.warning("closing %s: %s", self.peer, exc)
                return
            except ConnectionClosed:
                return
            self._in_flight += 1
            handlers.create_task(self._serve_frame(frame))

    async def _serve_frame(self, frame: Frame) -> None:
        try:
            reply = await self._reply_to(frame)
            if reply is not None:
                await self._channel.write(Frame(reply, frame.tpdu.reply() if frame.tpdu else None))
        except ConnectionClosed as exc:
            log.info("reply to %s not sent: %s", self.peer, exc)
        finally:
            self._in_flight -= 1
            self._slots.release()

    async def _reply_to(self, frame: Frame) -> bytes | None:
        """The encoded reply to one frame, or None."""
        try:
            request = Message.decode(frame.payload, self._spec)
        except FormatError as exc:
            log.warning("format error from %s: %s", self.peer, exc)
            return await self._guarded(self._on_format_error(exc), None, str(exc))
        if not request.is_request:
            log.warning("unsolicited %s from %s ignored", request.mti, self.peer)
            return None
        fallback = build_reply(request, SYSTEM_MALFUNCTION)
        return await self._guarded(self._handler(request), fallback, f"{request.mti} {request.match_key}")

    async def _guarded(
        self, answer: Awaitable[Message | None], fallback: Message | None, what: str
    ) -> bytes | None:
        """Await a handler and encode its reply; a handler bug or a malformed reply gives `fallback`."""
        try:
            reply = await answer
            return reply.encode(self._spec) if reply is not None else None
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug must not cost the acquirer its answer, nor the other requests of this connection.
            log.exception("handler failed on %s from %s", what, self.peer)
            return fallback.encode(self._spec) if fallback is not None else None
