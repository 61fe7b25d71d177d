"""Options several commands share, and the helpers their handlers use."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from ..model.data import PRESETS
from ..defaults import BATCH, MODEL
from ..errors import DenseNetTRTError
from ..machine import MAX_THREADS
from ..engine.spec import MAX_SEED

if TYPE_CHECKING:  # the backends, which declare the flags, import torch: see BackendFlagsCommand
    from ..backends.settings import Flag

# The types of the numbers several commands take: bounded where they are parsed.
THREADS = click.IntRange(1, MAX_THREADS)
SEED = click.IntRange(0, MAX_SEED)


class Finite(click.FloatRange):
    """A float range that also refuses NaN (every comparison with NaN is false, so a range
    alone lets it through) and infinity."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class OutputFile(click.ParamType):
    """A file the command writes (``-``: standard output), kept as given: ``Command`` checks
    it by the output rule before the command runs."""

    name = "file"

    def convert(self, value, param, ctx):
        return os.fspath(value)


class Command(click.Command):
    """Every command: before it runs, the files its ``OutputFile`` options name are checked by
    the one output rule (``artifact.check_outputs``) against ``--force``, each other, and every
    path the command reads (any other argument or option naming something that exists)."""

    def invoke(self, ctx: click.Context):
        outputs = {p.name: ctx.params[p.name] for p in self.params
                   if isinstance(p.type, OutputFile) and ctx.params.get(p.name) is not None}
        if outputs:
            from ..engine.artifact import check_outputs

            inputs = [(_name(p), v) for p in self.params if not isinstance(p.type, OutputFile)
                      for v in _paths(ctx.params.get(p.name))]
            checked = check_outputs(outputs, force=bool(ctx.params.get("force")), inputs=inputs)
            ctx.params.update({name: "-" if path is None else path for name, path in checked.items()})
        return super().invoke(ctx)


def _name(param: click.Parameter) -> str:
    return param.name if isinstance(param, click.Option) else param.human_readable_name


def _paths(value) -> list[str]:
    """The values of a parameter that name something on disk."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [os.fspath(v) for v in values
            if isinstance(v, (str, os.PathLike)) and os.fspath(v) not in ("", "-") and os.path.lexists(v)]


def command(*args, cls: type[Command] = Command, **kwargs):
    """``click.command`` with the ``Command`` class (or a subclass): every densenet-trt command is made so."""
    return click.command(*args, cls=cls, **kwargs)

MODEL_OPTIONS = [
    click.option("--model", "model_name", default=MODEL, show_default=True,
                 help="Preset name (see `densenet-trt models`)."),
    click.option("--weights", type=str, default=None,
                 help="Checkpoint (.pth, .pt, .safetensors; torchvision's files and legacy keys "
                      "load as they are), or 'imagenet' for torchvision's file in torch's hub "
                      "cache. Without it the weights are random."),
    click.option("--num-classes", type=click.IntRange(min=1), default=None,
                 help="Classifier outputs; default: the checkpoint's, else the preset's. A different "
                      "number re-initialises the classifier (for fine-tuning)."),
    click.option("--batch", default=BATCH, show_default=True,
                 help="A fixed batch size N, or a range MIN:OPT:MAX such as 1:8:32."),
    click.option("--image-size", type=int, default=None,
                 help="Input side in pixels; default: the preset's (224 ImageNet, 32 CIFAR)."),
]


def model_options(f):
    """--model, --weights, --num-classes, --batch, --image-size."""
    for option in reversed(MODEL_OPTIONS):
        f = option(f)
    return f


def floats(ctx, param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers (e.g. 0.485,0.456,0.406)")


PREPROCESS_OPTIONS = [
    click.option("--preprocess", type=click.Choice(list(PRESETS)), default=None,
                 help="How images become input: resize, center crop and normalise as torchvision's "
                      "ImageNet evaluation (256 -> 224) or CIFAR (32x32); default: the model's family."),
    click.option("--mean", callback=floats, default=None,
                 help="Per-channel mean (in [0, 1] units) replacing the preset's, comma-separated; "
                      "one value means grayscale (e.g. --mean 0.305 --std 0.323)."),
    click.option("--std", callback=floats, default=None, help="Per-channel std, like --mean."),
]


def preprocess_options(f):
    """--preprocess, --mean, --std."""
    for option in reversed(PREPROCESS_OPTIONS):
        f = option(f)
    return f


def backend_flags() -> list[tuple[str, Flag]]:
    """The flags the backends declare for their settings (``Backend.settings``), each with the
    setting it sets, in the registry's order; a flag two backends share (TensorRT's builder
    settings) once (``tests/test_architecture.py`` checks that they declare it alike)."""
    from ..backends import BACKENDS

    flags: dict[str, tuple[str, Flag]] = {}
    for backend in BACKENDS.values():
        for name, flag in backend.settings.flags().items():
            flags.setdefault(flag.flag, (name, flag))
    return list(flags.values())


def _click_option(flag: Flag) -> click.Option:
    if flag.type is bool:
        return click.Option([flag.flag], is_flag=True, help=flag.help)
    if flag.type is float:
        kind = Finite(flag.low, flag.high, min_open=flag.low_open)
    else:
        kind = click.IntRange(flag.low, flag.high) if flag.type is int else click.Path(dir_okay=False, path_type=Path)
    return click.Option([flag.flag], type=kind, default=None, help=flag.help)


class BackendFlagsCommand(Command):
    """A command that takes the backends' flags (``backend_flags``): they are added when the
    command first parses or shows its help, not when it is defined, because the backends that
    declare them import torch: ``densenet-trt --help`` and the other commands load none."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "_backend_flags", False):
            self._backend_flags = True
            self.params.extend(_click_option(flag) for _, flag in backend_flags())
        return super().get_params(ctx)


def backend_options(f):
    """The backends' flags (``backend_flags``; the command is a ``BackendFlagsCommand``), given
    to the command as one ``options`` dict (``BuildSpec.options``) holding the settings of the
    flags given."""

    @functools.wraps(f)
    def command(*args, **kwargs):
        given = [(name, flag, kwargs.pop(flag.parameter)) for name, flag in backend_flags()]
        options = {name: flag.value(value) for name, flag, value in given if value is not None and value is not False}
        return f(*args, options=options, **kwargs)

    return command


def preprocessing_option(model_name: str, image_size: int | None, preset, mean, std):
    """The Preprocessing the options ask for, or None where they ask for nothing."""
    if preset is None and mean is None and std is None:
        return None
    from ..model.data import preprocessing
    from ..model.registry import get_model_info
    from ..engine.spec import check_image_size

    info = get_model_info(model_name)
    size = check_image_size(info, image_size)
    return preprocessing(preset or (None if mean and std else info.family), size, mean, std)


def reporter(quiet: bool):
    return (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))



def deprecated(old: str, new: str, **kwargs):
    """A hidden option ``old`` that still works as ``new`` does and prints one warning line when
    used; the command takes the value as ``deprecated_<old>`` and resolves it with ``renamed``."""

    def warn(ctx, param, value):
        if value is not None:
            click.echo(f"warning: {old} is deprecated; use {new}", err=True)
        return value

    name = "deprecated_" + old.lstrip("-").replace("-", "_")
    return click.option(old, name, hidden=True, default=None, callback=warn, **kwargs)


def renamed(new_value, old_value, new: str, old: str):
    """The value given by the option ``new`` or its deprecated spelling ``old`` (not both)."""
    if new_value is not None and old_value is not None:
        raise click.UsageError(f"{old} is the old spelling of {new}: give {new} only")
    return old_value if new_value is None else new_value


def only_with(**rules):
    """Refuse, before the command runs, an option the user gave that does nothing without
    another: ``rules`` maps an option's parameter name to the parameter it applies with (which
    the user must give too), or to ``(parameter, value)`` (which must have that value)."""

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            check_only_with(click.get_current_context(), rules)
            return f(*args, **kwargs)

        return command

    return decorate


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave the parameter ``name`` (not left at its default)."""
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def check_only_with(ctx: click.Context, rules: dict[str, str | tuple[str, object]]) -> None:
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    for name, needs in rules.items():
        if not given(ctx, name):
            continue
        if isinstance(needs, tuple):
            other, value = needs
            met, need = ctx.params[other] == value, f"{flags[other]} {value}"
        else:
            met, need = given(ctx, needs), flags[needs]
        if not met:
            raise DenseNetTRTError(
                f"{flags[name]} does nothing without {need}: give {need} too, or leave {flags[name]} out"
            )
