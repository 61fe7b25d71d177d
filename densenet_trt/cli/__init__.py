"""The ``densenet-trt`` command line: it parses and prints; the library does the work.

Library errors name Python parameters (``force=True``, ``batch=1:8:32``); ``as_flags`` says
them as the flags of the command that failed (``--force``, ``--batch 1:8:32``).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import signal
import sys
import threading
import warnings

import click

from ..startup import stop_at_startup
from ..errors import DenseNetTRTError
from ..version import __version__
from .engines import build, export, info, models, verify
from .int8 import compare, sensitivity
from .serve import loadtest, serve
from .use import calibrate, export_triton, predict, profile

# Library parameter names that the command line spells another way.
_RENAMED = {"model": "model_name", "format": "fmt", "json": "as_json"}
_PARAMETER = re.compile(r"\b([a-z][a-z0-9_]*)=([^\s,;)]+)")


def as_flags(message: str, command: click.Command | None) -> str:
    """``message`` with each ``name=value`` that names an option of ``command`` (or else of
    another command) said as its flag: ``force=True`` -> ``--force``, ``verify=False`` -> ``--no-verify``, ``vs=none`` ->
    ``--vs none``."""
    if command is None:
        return message
    options = {p.name: p for other in main.commands.values() for p in other.params if isinstance(p, click.Option)}
    options.update({p.name: p for p in command.params if isinstance(p, click.Option)})

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if value == "False" and f"no_{name}" in options:  # verify=False -> --no-verify
            return options[f"no_{name}"].opts[0]
        option = options.get(_RENAMED.get(name, name))
        if option is None:
            return match.group(0)
        if value == "True" and option.is_flag:
            return option.opts[0]
        if value == "False" and option.secondary_opts:
            return option.secondary_opts[0]
        return f"{option.opts[0]} {value.strip(chr(34) + chr(39) + '[]()')}"

    return _PARAMETER.sub(flag, message)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised in the main thread so that every cleanup runs. A subclass: CPython
    ends ``python -m`` by SIGINT, whatever the exit status, when a plain KeyboardInterrupt
    escaped code run by ``exec`` of a string (dataclasses, torch.fx) before it was caught."""

    def __init__(self, signum: signal.Signals):
        super().__init__()
        self.signum = signum


def _interrupt(signum: int, frame) -> None:
    if _importing(frame):
        # Raised inside an extension module's initialisation, the exception would become an
        # ImportError, which libraries catch for optional packages (torch catches triton's):
        # the signal would be lost. It is delivered again once the import is done.
        threading.Timer(0.05, _again, (signum,)).start()
        return
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    raise Interrupted(signal.Signals(signum))


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _again(signum: int) -> None:
    if signal.getsignal(signum) is _interrupt:
        signal.pthread_kill(threading.main_thread().ident, signum)


def _catch_signals(ctx: click.Context) -> None:
    """Until the command ends, SIGINT and SIGTERM raise ``Interrupted`` (where they have their
    default handling or the console script's: an ignored signal stays ignored); the handlers
    before are put back after."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        before = signal.getsignal(signum)
        if before in (default, stop_at_startup):
            signal.signal(signum, _interrupt)
            ctx.call_on_close(functools.partial(signal.signal, signum, before))


class _OutputFailed(Exception):
    """Writing the command's standard output failed; the OSError is the cause."""


class _Stdout:
    """Standard output as every command writes it (``click.echo``, ``print``): a write that fails
    (a full disk, ``> /dev/full``, a pipe whose reader has gone) raises ``_OutputFailed``, so that
    it is told apart from an OSError about another file."""

    def __init__(self, stream):
        self._stream = stream

    def _guarded(self, method: str, *args):
        if self._stream is None:  # Python started with the descriptor closed (``>&-``)
            raise _OutputFailed() from OSError(errno.EBADF, os.strerror(errno.EBADF))
        try:
            return getattr(self._stream, method)(*args)
        except OSError as e:
            raise _OutputFailed() from e

    def write(self, text):
        return self._guarded("write", text)

    def writelines(self, lines):
        return self._guarded("writelines", lines)

    def flush(self):
        return self._guarded("flush")

    @property
    def buffer(self):  # binary writes (``sys.stdout.buffer.write``), guarded the same
        return _Stdout(self._stream.buffer)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _discard(stream) -> None:
    """Python's advice for a closed pipe (the signal module's note on SIGPIPE): point the
    descriptor at /dev/null, so that the flush at exit does not fail again."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # closed at start (None), or not a file (click's test runner)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


class _Group(click.Group):
    """Prints the package's errors as one line and exits 1; ``--debug`` shows the traceback.
    Ctrl-C and SIGTERM stop the command after its cleanup, with one line and the shell's status
    for the signal: 130 (SIGINT) or 143 (SIGTERM). Standard output that cannot be written is one
    line and exit 1; a pipe whose reader has gone (``densenet-trt models | head -1``) ends the
    command quietly with the shell's status for SIGPIPE, 141, as other Unix tools end."""

    def main(self, *args, **kwargs):
        stdout = sys.stdout
        sys.stdout = _Stdout(stdout)
        try:
            return super().main(*args, **kwargs)
        except _OutputFailed as e:
            _discard(stdout)
            if e.__cause__.errno == errno.EPIPE:
                sys.exit(128 + signal.SIGPIPE)
            reason = e.__cause__.strerror or str(e.__cause__)
            click.echo(f"error: cannot write the output: {reason[:1].lower()}{reason[1:]}", err=True)
            sys.exit(1)
        finally:
            sys.stdout = stdout

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DenseNetTRTError as e:
            if ctx.params.get("debug"):
                raise
            command = self.commands.get(ctx.invoked_subcommand or "")
            click.echo(f"error: {as_flags(str(e), command)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            click.echo(f"error: interrupted by {signum.name}", err=True)
            ctx.exit(128 + signum)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="densenet-trt")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
def main(debug: bool) -> None:
    """Turn a DenseNet into a fast, verified inference engine.

    \b
    Examples:
      densenet-trt models
      densenet-trt export --model densenet121 --format onnx --batch 1:8:32 --output densenet121.onnx
    """
    warnings.showwarning = _show_warning
    _catch_signals(click.get_current_context())


for _command in (models, export, build, info, verify, calibrate, sensitivity, compare, profile, export_triton, predict, serve, loadtest):
    main.add_command(_command)
