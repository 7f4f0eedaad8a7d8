"""sd_notify over a real unix datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.systemd_notify import SystemdNotifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_messages_reach_the_socket_and_the_watchdog_is_rate_limited(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert notifier.enabled and notifier.watchdog_interval_s == 1.0
    notifier.ready("serving x")
    assert sock.recv(100) == b"READY=1\nSTATUS=serving x"
    notifier.watchdog(now=10.0)
    notifier.watchdog(now=10.5)  # too soon: not sent
    notifier.watchdog(now=11.0)
    notifier.stopping()
    assert [sock.recv(100) for _ in range(3)] == [b"WATCHDOG=1", b"WATCHDOG=1", b"STOPPING=1"]
    notifier.close()


def test_abstract_socket_names_work(tmp_path: Path) -> None:
    name = f"edgegan-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        notifier.status("hello")
        assert sock.recv(100) == b"STATUS=hello"
        notifier.close()
    finally:
        sock.close()


def test_outside_systemd_nothing_happens_and_nothing_fails(tmp_path: Path) -> None:
    quiet = SystemdNotifier({})
    assert not quiet.enabled and quiet.watchdog_interval_s is None
    quiet.ready()
    quiet.watchdog()
    gone = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    gone.ready()  # systemd went away: logged at debug, never raised
    other_pid = SystemdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_interval_s is None  # the watchdog is meant for another process
    gone.close()
