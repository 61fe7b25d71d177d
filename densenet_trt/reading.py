"""The one reader every input file goes through, whoever names it: the user (``--labels``,
``--data``, ``--weights``, images) or a folder the tool wrote (an engine's files and manifest, a
calibration's files and report).

``input_file`` refuses, naming the input and the path: a missing path, a folder or anything
else that is not a regular file (a named pipe would wait for a writer forever, a device such as
``/dev/zero`` could be read without end), a file this process may not read (permission denied),
and a file over the size limit where one applies. ``read_text`` reads such a file whole, up to
``TEXT_LIMIT``; ``read_npy`` and ``read_npz`` read numpy files, refusing one whose content is not
what its name says and an ``.npz`` with members that are not arrays; pickled objects are never
loaded.
"""

from __future__ import annotations

import contextlib
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import DenseNetTRTError

# Labels files and the JSON documents (manifest, calibration report, ranges) are read whole:
# 16 MiB is far above any of them (ImageNet-21k's class names take about 1 MiB).
TEXT_LIMIT = 16 * 2**20

# The first bytes of each kind of numpy file, as numpy.load tells them apart (an empty .npz is
# a zip archive's end record alone).
_MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}
_KINDS = [
    (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
]


def input_file(path: str | os.PathLike, what: str, *, limit: int | None = None) -> Path:
    """``path`` where it is a regular file (or a link to one) that this process can open for
    reading, of at most ``limit`` bytes where a limit is given; else DenseNetTRTError naming
    ``what`` ("labels file", "checkpoint", "calibration file") and the path."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise DenseNetTRTError(f"{what} {str(path)!r} does not exist") from None
    except OSError as e:
        raise DenseNetTRTError(f"cannot read {what} {path}: {_reason(e)}") from None
    _check_regular(mode, path, what)
    try:  # not blocking: a named pipe put in its place meanwhile is refused, not waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise DenseNetTRTError(f"cannot read {what} {path}: {_reason(e)}") from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    _check_regular(info.st_mode, path, what)
    if limit is not None and info.st_size > limit:
        raise DenseNetTRTError(
            f"{what} {path} is {info.st_size} bytes, over the limit of {limit} bytes for it; is it the right file?"
        )
    return path


def _check_regular(mode: int, path: Path, what: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        raise DenseNetTRTError(f"{what} {path} is not a regular file ({kind}); give a file")


def _reason(error: OSError) -> str:
    return "permission denied" if isinstance(error, PermissionError) else (error.strerror or type(error).__name__)


def read_text(path: str | os.PathLike, what: str, *, limit: int = TEXT_LIMIT) -> str:
    """The UTF-8 text of the file at ``path`` (``input_file``'s checks, at most ``limit`` bytes)."""
    path = input_file(path, what, limit=limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise DenseNetTRTError(f"cannot read {what} {path}: {_reason(e)}") from None
    if len(data) > limit:
        raise DenseNetTRTError(f"{what} {path} grew over the limit of {limit} bytes while it was read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DenseNetTRTError(f"{what} {path} is not UTF-8 text") from None


def read_npy(path: str | os.PathLike, what: str) -> np.ndarray:
    """The array of the ``.npy`` file at ``path``."""
    path = _numpy_file(path, what, ".npy")
    with _numpy_errors(path):
        return np.load(path, allow_pickle=False)


def read_npz(path: str | os.PathLike, what: str, required: Sequence[str],
             optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays called ``required`` and those of ``optional`` it has, from the ``.npz``
    archive at ``path``. Every member of the archive must be an array (``NAME.npy``); other
    members are refused by name. Members not asked for are not read."""
    path = _numpy_file(path, what, ".npz")
    with _numpy_errors(path), np.load(path, allow_pickle=False) as archive:
        junk = [member for member in archive.zip.namelist() if not member.endswith(".npy")]
        if junk:
            more = f" (and {len(junk) - 1} more)" if len(junk) > 1 else ""
            raise DenseNetTRTError(
                f"{what} {path} has member {junk[0]!r}{more}, which is not a numpy array: an .npz holds "
                "only arrays; write it with numpy.savez"
            )
        missing = [name for name in required if name not in archive.files]
        if missing:
            raise DenseNetTRTError(
                f"{path} has no {missing[0]!r} array (it has {', '.join(archive.files) or 'none'})"
            )
        return {name: archive[name] for name in (*required, *optional) if name in archive.files}


def _numpy_file(path: str | os.PathLike, what: str, kind: str) -> Path:
    """``path`` (``input_file``'s checks) where its first bytes are those of a ``kind`` file
    (".npy" or ".npz"); one of the other kind is refused by name."""
    path = input_file(path, what)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise DenseNetTRTError(f"cannot read {what} {path}: {_reason(e)}") from None
    if head.startswith(_MAGIC[kind]):
        return path
    other = ".npz" if kind == ".npy" else ".npy"
    if head.startswith(_MAGIC[other]):
        holds = "an .npz archive" if other == ".npz" else "one .npy array"
        raise DenseNetTRTError(f"{what} {path} is named {kind} but holds {holds}; rename it to {other}")
    raise DenseNetTRTError(
        f"cannot read {path} as a numpy file (it is not a {kind} file); is it complete? Write it with "
        "numpy.save or numpy.savez"
    )


@contextlib.contextmanager
def _numpy_errors(path: Path) -> Iterator[None]:
    """numpy's and zipfile's errors for a damaged file, as one DenseNetTRTError naming it."""
    try:
        yield
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile, zlib.error) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "pickle" in reason:  # numpy's advice to unpickle is not for files from elsewhere
            reason = "not numpy's format, or pickled Python objects, which are never loaded"
        raise DenseNetTRTError(
            f"cannot read {path} as a numpy file ({reason}); is it complete? Write it with "
            "numpy.save or numpy.savez"
        ) from None
