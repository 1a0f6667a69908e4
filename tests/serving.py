"""Serving a local gateway from a thread for the length of a test (or a session)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from local.gateway import GatewayServer


@contextmanager
def served(build: Callable[[], GatewayServer], *, poll_interval: float = 0.05) -> Iterator[GatewayServer]:
    """The gateway ``build`` makes, serving from a thread until the block ends; then shut down,
    and the process's environment as it was before ``build`` (a gateway sets its functions'
    variables, as Lambda would, in this process too)."""
    saved_environ = dict(os.environ)
    server = build()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        os.environ.clear()
        os.environ.update(saved_environ)
