"""A Mosquitto of our own on a free loopback port: for the demo, the integration tests and the benchmarks,
one way to find the binary, pick a port, write the config and wait until it listens."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO_PATHS = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """The mosquitto binary, on PATH or where Debian puts it (sbin is often off a user's PATH)."""
    return next((found for name in MOSQUITTO_PATHS if (found := shutil.which(name))), None)


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports nothing on loopback listens on now (held together while picked)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port nothing on loopback listens on now."""
    return free_ports(1)[0]


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    """Return once something accepts on 127.0.0.1:`port`; RuntimeError if `process` exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker: exited with code {process.returncode} before accepting connections")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker: nothing listens on 127.0.0.1:{port} after {seconds:.0f} s")


def start_mosquitto(
    folder: Path, port: int, extra_conf: str = "", log_file: Path | None = None, max_queued: int = 100_000
) -> subprocess.Popen[bytes]:
    """Mosquitto listening on 127.0.0.1:`port`, anonymous, no persistence, deep queues; `extra_conf` adds
    lines (TLS, limits). Its output goes to `log_file`, else nowhere."""
    binary = find_mosquitto()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages {max_queued}\n{extra_conf}"
    )
    return start_listening([binary, "-c", str(conf)], port, log_file)


def start_listening(command: list[str], port: int, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Run a broker `command` and return once it accepts on `port` (killed if it never does); its output
    goes to `log_file`, else nowhere."""
    if log_file is None:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    else:
        with log_file.open("wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        raise
    return process
