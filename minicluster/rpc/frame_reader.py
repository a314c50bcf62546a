"""One read from a connection into its FrameDecoder: shared by both sides (`ServerConnection`
for requests, `ClientConnection` for replies), as `FrameWriter` is for writing."""

from __future__ import annotations

import trio

from .protocol import FrameDecoder


async def receive_into(
    decoder: FrameDecoder, stream: trio.abc.Stream, sock: trio.socket.SocketType | None
) -> bool:
    """Read once from `stream` into `decoder`; False at EOF. With `sock` (the plain socket
    under a SocketStream), the rest of a large frame goes from the socket straight into the
    frame's own buffer (`FrameDecoder.receive_view`). A broken connection raises what the
    stream raises (OSError, trio.BrokenResourceError, trio.ClosedResourceError); a header
    over the decoder's limit raises FrameTooLargeError."""
    view = decoder.receive_view() if sock is not None else None
    if view is None:
        data = await stream.receive_some(decoder.receive_size())
        if not data:
            return False
        decoder.feed(data)
        return True
    with view:
        count = await sock.recv_into(view)  # type: ignore[union-attr]
    if not count:
        return False
    decoder.received(count)
    return True
