"""The ``densenet-trt`` console script and ``python -m densenet_trt``.

It runs before torch is imported (``import densenet_trt`` loads none), for what must be said
before: a working folder that was deleted (torch's libraries fail to load there, with a message
about oneMKL), and Ctrl-C or SIGTERM while the command's modules load, which takes seconds.
"""

from __future__ import annotations

import os
import signal
import sys

from .startup import stop_at_startup

_DEFAULTS = ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))


def main() -> None:
    try:
        os.getcwd()
    except FileNotFoundError:
        sys.stderr.write("error: the working folder no longer exists (deleted or moved); cd to a folder that exists\n")
        sys.exit(1)
    for signum, default in _DEFAULTS:
        if signal.getsignal(signum) == default:  # an ignored signal stays ignored
            signal.signal(signum, stop_at_startup)
    from .cli import main as group

    group(prog_name="densenet-trt")

