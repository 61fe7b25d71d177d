"""A backend's build settings as a typed record with one validator, and the command-line flags
it declares for them (as Polygraphy's backends own their argument groups).

A backend's settings class is a frozen dataclass deriving from ``Settings`` whose fields are
made by ``setting``: the field's kind (an integer within bounds, true or false, a file path) is
what ``Settings`` checks, for every backend alike, and ``flag`` (a ``Flag``) is how the command
line offers it. ``build`` takes the options as a dict (``BuildSpec.options``);
``Settings.from_options`` makes the record from it, refusing names the class has not.
Adding an option is one field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DenseNetTRTError

INTEGER, BOOLEAN, PATH = "integer", "boolean", "path"


@dataclasses.dataclass(frozen=True)
class Flag:
    """How the command line offers a setting: ``flag`` (``--workspace-gb``), ``help``, and
    ``type``: ``bool`` (a flag that sets the setting to ``sets``), or ``int``, ``float`` or
    ``Path`` (a file), the flag's value, within ``low`` to ``high`` (``low_open``: above
    ``low``); ``scale``: a float flag's value times ``scale``, as an integer, is the setting's
    (GiB to bytes). Unset, a flag leaves the setting at its default."""

    flag: str
    help: str
    type: type = bool
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    sets: Any = True
    scale: int | None = None

    @property
    def parameter(self) -> str:
        """The Python parameter name the command line gives the flag: ``--dla-core`` -> ``dla_core``."""
        return self.flag.removeprefix("--").replace("-", "_")

    def value(self, given: Any) -> Any:
        """The setting's value from the flag's ``given`` one."""
        if self.type is bool:
            return self.sets
        if self.scale is not None:
            return int(given * self.scale)
        return str(given) if self.type is Path else given


def setting(default: Any, kind: str, low: int | None = None, high: int | None = None, flag: Flag | None = None):
    """A settings field: its ``default``, its ``kind`` (``INTEGER`` from ``low`` to ``high``,
    ``BOOLEAN``, ``PATH``: a non-empty file path; None stays allowed where it is the default)
    and its command-line ``flag``."""
    return dataclasses.field(default=default, metadata={"kind": kind, "low": low, "high": high, "flag": flag})


@dataclasses.dataclass(frozen=True)
class Settings:
    """A backend's build settings; ``WHO`` names the backend in its refusals."""

    WHO: ClassVar[str] = "backend"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check(self.WHO, field, getattr(self, field.name))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def flags(cls) -> dict[str, Flag]:
        """Each setting the command line offers, by name, with its flag."""
        return {field.name: field.metadata["flag"] for field in dataclasses.fields(cls) if field.metadata["flag"]}

    @classmethod
    def from_options(cls, options: dict[str, Any]):
        """The settings from ``BuildSpec.options``, checked."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise DenseNetTRTError(
                f"unknown {cls.WHO} option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"known options: {', '.join(cls.names())}"
            )
        return cls(**options)


def _check(who: str, field: dataclasses.Field, value: Any) -> None:
    """Refuse ``value`` for ``field`` where it is not of the field's kind (None only as the default)."""
    kind, low, high = field.metadata["kind"], field.metadata["low"], field.metadata["high"]
    if value is None and field.default is None:
        return
    if kind == INTEGER and (isinstance(value, bool) or not isinstance(value, int) or value < low
                            or (high is not None and value > high)):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise DenseNetTRTError(f"{who} option {field.name} must be an integer {bounds}, got {value!r}")
    if kind == BOOLEAN and not isinstance(value, bool):
        raise DenseNetTRTError(f"{who} option {field.name} must be true or false, got {value!r}")
    if kind == PATH and (not isinstance(value, str) or not value):
        raise DenseNetTRTError(f"{who} option {field.name} must be a file path, got {value!r}")
