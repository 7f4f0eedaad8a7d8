"""How every EdgeGAN command ends: our own errors as one line and exit 2, bugs as a traceback and exit 1.

Shared by `edge-agent` and `edge-trainer` so both behave the same for scripts that call them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def run_command(
    prog: str, handler: Handler, args: argparse.Namespace, expected: tuple[type[Exception], ...]
) -> int:
    """Configure logging, run one subcommand handler and map its outcome to an exit code."""
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
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
