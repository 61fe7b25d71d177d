"""The ``densenet-trt`` command line: it parses and prints; the library does the work.

Library errors name Python parameters (``force=True``, ``batch=1:8:32``); ``as_flags`` says
them as the flags of the command that failed (``--force``, ``--batch 1:8:32``).
"""

from __future__ import annotations

import re
import warnings

import click

from ..errors import DenseNetTRTError
from ..version import __version__
from .engines import build, export, info, models, verify
from .use import calibrate, export_triton, predict, profile

# Library parameter names that the command line spells another way.
_RENAMED = {"model": "model_name", "format": "fmt", "json": "as_json"}
_PARAMETER = re.compile(r"\b([a-z][a-z_]*)=([^\s,;)]+)")


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
        if name == "verify" and value == "False" and "no_verify" in options:
            return "--no-verify"
        option = options.get(_RENAMED.get(name, name))
        if option is None:
            return match.group(0)
        if value == "True" and option.is_flag:
            return option.opts[0]
        if value == "False" and option.secondary_opts:
            return option.secondary_opts[0]
        return f"{option.opts[0]} {value.strip(chr(34) + chr(39) + '[]()')}"

    return _PARAMETER.sub(flag, message)


class _Group(click.Group):
    """Prints the package's errors as one line and exits 1; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DenseNetTRTError as e:
            if ctx.params.get("debug"):
                raise
            command = self.commands.get(ctx.invoked_subcommand or "")
            click.echo(f"error: {as_flags(str(e), command)}", err=True)
            ctx.exit(1)


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


for _command in (models, export, build, info, verify, calibrate, profile, export_triton, predict):
    main.add_command(_command)
