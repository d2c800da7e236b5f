"""A gateway's shutdown is not a client disconnect.

On SIGTERM uvicorn stops accepting connections and waits for the ones in flight. The drain
window (``LANGSCALE_GATEWAY_DRAIN_TIMEOUT``) is what those get: invokes keep waiting for
their runs and streams keep relaying. When the window (less a margin for the last bytes)
is over, they end *resumably*: an invoke answers 503 naming its run, a ``/v1`` stream sends
a ``reconnect`` event (the client resumes with its Last-Event-ID elsewhere), a LangServe
stream sends an error event pointing at the run's stream. The gateway's own going never
cancels a run; only a client that leaves does (per its disconnect policy).
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


class Drain:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # The last seconds of the window are kept for the final events to reach clients.
        self.margin = min(2.0, seconds * 0.2)
        self.started = False
        self.expired = asyncio.Event()  # set when in-flight work must wrap up

    def begin(self) -> None:
        """The server was told to stop (SIGTERM / SIGINT): the window starts now."""
        if self.started:
            return
        self.started = True
        logger.info("gateway stopping: draining requests and streams for %.0f s", self.seconds)
        asyncio.get_running_loop().call_later(
            max(0.0, self.seconds - self.margin), self.expired.set
        )
