"""The handler of Ctrl-C and SIGTERM while the command line starts (``console.main`` installs it
before anything heavy is imported; ``cli`` takes the signals over from it), in a module of its
own so that both can name it."""

from __future__ import annotations

import os
import signal


def stop_at_startup(signum: int, frame) -> None:
    """Ctrl-C or SIGTERM before the command runs: nothing is written yet, so the process ends
    at once, with one line and the shell's status for the signal (130, 143). Raising instead
    would give a traceback from deep in torch's import, or be lost where it became an
    ImportError that a library catches. Once the command runs, ``cli._catch_signals`` takes
    the signals over, for its cleanup."""
    os.write(2, f"error: interrupted by {signal.Signals(signum).name}\n".encode())
    os._exit(128 + signum)
