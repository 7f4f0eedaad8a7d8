"""How every EdgeGAN command ends: our own errors as one line and exit 2, bugs as a traceback and exit 1.

Shared by `edge-agent` and `edge-trainer` so both behave the same for scripts that call them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for journald, Loki or any log shipper that parses fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def run_command(
    prog: str, handler: Handler, args: argparse.Namespace, expected: tuple[type[Exception], ...]
) -> int:
    """Configure logging, run one subcommand handler and map its outcome to an exit code."""
    handler_out = logging.StreamHandler()
    if getattr(args, "log_json", False):
        handler_out.setFormatter(JsonLogFormatter())
    else:
        handler_out.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO, handlers=[handler_out]
    )
    try:
        return handler(args)
    except expected as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
