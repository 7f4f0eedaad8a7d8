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


def free_port() -> int:
    """A TCP port nothing on loopback listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    output = subprocess.DEVNULL if log_file is None else log_file.open("wb")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT)
    if log_file is not None:
        output.close()  # type: ignore[union-attr]  # the child holds its own descriptor
    try:
        wait_for_port(port, process)
    except RuntimeError:
        process.kill()
        raise
    return process
