"""systemd's notify protocol (sd_notify): readiness, status line, watchdog pings, stopping.

The protocol is one datagram per message to the socket named in $NOTIFY_SOCKET, so it is written out here
rather than taken from a package (the pure-Python one is unmaintained since 2017; the libsystemd binding
needs a C library that slim containers and Jetson images may lack). Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Talks to systemd when started by it with Type=notify; silent otherwise."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address  # abstract namespace
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        applies = not watchdog_pid or watchdog_pid == str(os.getpid())
        # Ping at half the interval systemd waits, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval_s = int(watchdog_usec) / 2e6 if watchdog_usec.isdigit() and applies else None
        self._last_ping = float("-inf")

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening."""
        return self._socket is not None

    def _send(self, message: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as err:  # systemd gone or the socket closed: never fatal for the daemon
            log.debug("sd_notify %r failed: %s", message, err)

    def ready(self, status: str = "") -> None:
        """The service is up (Type=notify units count as started from here)."""
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        """The one-line status `systemctl status` shows."""
        self._send(f"STATUS={text}")

    def watchdog(self, now: float | None = None) -> None:
        """Ping the watchdog if it is due; call from the loop whose progress it vouches for."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """The service is shutting down on purpose."""
        self._send("STOPPING=1")

    def close(self) -> None:
        """Release the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
