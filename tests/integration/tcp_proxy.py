"""A small TCP proxy between the agent and the broker that can break the network the ways networks break.

- `black_hole()`: connections stay open but no byte moves either way (a stateful firewall dropping
  packets, a half-dead NAT): only keepalives can tell.
- `partition()`: every connection is cut and new ones are refused until `heal()`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType


class TcpProxy:
    """Listens on a free loopback port and forwards each connection to `target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._refusing = False
        self._closed = threading.Event()
        self.connections = 0  # accepted and forwarded, for the test's own checks
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        """Stop moving bytes; connections stay open."""
        self._forwarding.clear()

    def partition(self) -> None:
        """Cut every connection and refuse new ones."""
        with self._lock:
            self._refusing = True
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)

    def heal(self) -> None:
        """Forward again and accept new connections (connections cut stay cut)."""
        with self._lock:
            self._refusing = False
        self._forwarding.set()

    def close(self) -> None:
        self._closed.set()
        self.partition()
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Move bytes both ways while forwarding; hold them (unread) while black-holed."""
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                self._forwarding.wait(timeout=0.2)
                if not self._forwarding.is_set():
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    while not self._forwarding.wait(timeout=0.2):  # black-holed mid-read: hold them
                        if self._closed.is_set():
                            return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket another thread closed (fd -1)
            return
        finally:
            _close(client, upstream)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
