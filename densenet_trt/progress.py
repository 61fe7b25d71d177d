"""What a long call says while it works, and what it keeps out of the way.

``Progress`` is the callback every long call takes: it is called with one line as each step
starts (``quiet`` says nothing). ``step`` also says how long the step took when it ends;
``Stopwatch`` gives the wall time of a whole command. Calls deep inside another (a graph
capture inside a backend's build) ``say`` their steps: to the progress that ``reporting``
set around the outer call, so that the Backend protocol need not carry a callback.

``library_chatter`` keeps out the messages other libraries print that a user cannot act on,
each named by its text, only for the call it wraps; every other warning still shows.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

Progress = Callable[[str], None]


def quiet(message: str) -> None:
    pass


def seconds(t: float) -> str:
    """A duration as a person reads it: ``0.4 s``, ``28 s``."""
    return f"{t:.1f} s" if t < 10 else f"{t:.0f} s"


@dataclasses.dataclass
class Took:
    seconds: float = 0.0


@contextlib.contextmanager
def step(progress: Progress, doing: str, done: str) -> Iterator[Took]:
    """Say ``doing`` as the block starts and ``done in N s`` when it ends without an error;
    the ``Took`` it gives holds the seconds then."""
    progress(doing)
    took, start = Took(), time.perf_counter()
    yield took
    took.seconds = time.perf_counter() - start
    progress(f"{done} in {seconds(took.seconds)}")


_REPORTING: contextvars.ContextVar[Progress] = contextvars.ContextVar("densenet_trt.progress", default=quiet)


@contextlib.contextmanager
def reporting(progress: Progress) -> Iterator[None]:
    """Within the block, ``say`` goes to ``progress``."""
    token = _REPORTING.set(progress)
    try:
        yield
    finally:
        _REPORTING.reset(token)


def say(message: str) -> None:
    """A progress line from a call deep inside another: to the progress ``reporting`` set."""
    _REPORTING.get()(message)


def process_age() -> float | None:
    """Seconds since this process started, where the system says (Linux's /proc); else None."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class Stopwatch:
    """The wall time of a command: from the process's start where the process is the command
    (``densenet-trt``, ``python -m densenet_trt``), so that its imports count as `time` counts
    them; else (a command called from Python) from when the stopwatch was made."""

    def __init__(self) -> None:
        main = getattr(sys.modules.get("__main__"), "__spec__", None)
        is_command = Path(sys.argv[0]).name == "densenet-trt" or getattr(main, "name", None) == "densenet_trt.__main__"
        self.start = time.monotonic() - ((process_age() if is_command else None) or 0.0)

    def seconds(self) -> float:
        return time.monotonic() - self.start


class _Drop(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


# (logger, the start of its message): torch logs this when torch.utils.cpp_extension is first
# imported (by ModelOpt and Inductor) with a CUDA build of torch on a machine without a GPU;
# CPU engines never use CUDA.
_LOGGED = (("torch.utils.cpp_extension", "No CUDA runtime is found"),)
# (category, the start of its message): TorchScript's deprecation, said when the user asked
# for TorchScript by name.
_WARNED = ((FutureWarning, r"`torch\.jit\.save` is deprecated"),)


@contextlib.contextmanager
def library_chatter() -> Iterator[None]:
    """Within the block, the library messages above are not shown; all others are."""
    filters = [(logging.getLogger(name), _Drop(prefix)) for name, prefix in _LOGGED]
    with warnings.catch_warnings():
        for category, message in _WARNED:
            warnings.filterwarnings("ignore", message, category)
        for logger, drop in filters:
            logger.addFilter(drop)
        try:
            yield
        finally:
            for logger, drop in filters:
                logger.removeFilter(drop)
