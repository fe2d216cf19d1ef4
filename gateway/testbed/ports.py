"""Free loopback ports for test brokers, proxies and daemons."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that was free a moment ago.

    Racy by nature (another process may take it before the caller binds), so whoever binds it
    later must retry with a new port on "address in use"; MosquittoBroker does.
    """
    if host not in (LOOPBACK, "localhost", "::1"):
        # Test processes must never listen beyond this machine.
        raise ValueError(f"free_port({host!r}): only loopback addresses are allowed")
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
