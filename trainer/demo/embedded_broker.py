"""A pure-Python MQTT 3.1.1 broker (amqtt) for machines without Mosquitto.

Run as `python -m trainer.demo.embedded_broker --port N`.

Only the demo falls back to it, and only on 127.0.0.1; Mosquitto is what the tests and deployments use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal


async def _serve(port: int) -> None:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 1000}},
            "auth": {"allow-anonymous": True},
            "topic-check": {"enabled": False},
        }
    )
    await broker.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    with contextlib.suppress(Exception):
        await broker.shutdown()


def main() -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
