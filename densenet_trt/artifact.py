"""Files on disk: written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DenseNetTRTError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """``path`` as a Path, after checking that it may be (over)written and its folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise DenseNetTRTError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise DenseNetTRTError(f"{path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise DenseNetTRTError(f"folder {str(folder)!r} for {path.name} does not exist")
    if not os.access(folder, os.W_OK):
        raise DenseNetTRTError(f"folder {str(folder)!r} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in the folder of ``path``; renamed to ``path`` when the block ends
    normally, removed when it raises (Ctrl-C included). The temporary keeps the suffix, for
    writers that choose the format by it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise
