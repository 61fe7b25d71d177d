"""The ``densenet-trt`` console script and ``python -m densenet_trt``.

It runs before torch is imported (``import densenet_trt`` loads none), for what must be said
before: a working folder that was deleted (torch's libraries fail to load there, with a message
about oneMKL), and Ctrl-C or SIGTERM while the command's modules load, which takes seconds.
"""

from __future__ import annotations

import os
import signal
import sys

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


def stop_at_startup(signum: int, frame) -> None:
    """Ctrl-C or SIGTERM before the command runs: nothing is written yet, so the process ends
    at once, with one line and the shell's status for the signal (130, 143). Raising instead
    would give a traceback from deep in torch's import, or be lost where it became an
    ImportError that a library catches. Once the command runs, ``cli._catch_signals`` takes
    the signals over, for its cleanup."""
    os.write(2, f"error: interrupted by {signal.Signals(signum).name}\n".encode())
    os._exit(128 + signum)
