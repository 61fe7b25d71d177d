"""Files on disk: written whole or not at all, and checked by their sha256."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import DenseNetTRTError
from .reading import input_file

_AT_FDCWD = -100  # Linux's "relative to the working folder"
_RENAME_EXCHANGE = 2
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_MARGIN_BYTES = 16 << 20
_FULL_BYTES = 1 << 20  # less free than this after a writer failed: the disk is full
# The temporaries atomic_dir and atomic_path make: .NAME.partial-PID-XXXXXXXX[.SUFFIX] and
# .NAME.old-PID-XXXXXXXX (tempfile's 8 random characters).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>[0-9]+)-[a-z0-9_]{8}(?:\.[^.]*)?$")


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """``path`` as a Path, after checking that it may be (over)written and its folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise DenseNetTRTError(f"{path} exists; pass force=True to overwrite it")
    if path.is_dir():
        raise DenseNetTRTError(f"{path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise DenseNetTRTError(f"folder {str(folder)!r} for {path.name} does not exist")
    if not os.access(folder, os.W_OK):
        raise DenseNetTRTError(f"folder {str(folder)!r} is not writable")
    return path


def entry_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder/name`` for an output ``name`` that is one plain folder name: anything that
    could reach outside ``folder`` or replace ``folder`` itself (``.``, ``..``, ``a/b``, an
    absolute path) is refused, as are names starting with ``.``, which the tool's temporary
    folders use."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or name.startswith(".")
        or "/" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or "\0" in name
    ):
        raise DenseNetTRTError(
            f"name {name!r} is not a plain folder name: give one name without '/' and not "
            f"starting with '.', for a folder inside {str(folder)!r}"
        )
    return Path(folder) / name


def writable_folder(folder: str | os.PathLike, fix: str, create: bool = True) -> Path:
    """``folder`` after checking that a file can be written in it: its permission bits
    (``os.access``) and, since those do not stop root, a temporary file made and removed there
    (a read-only file system stops everyone). ``create``: make it if missing; else check the
    nearest folder above it that exists, creating nothing. ``fix`` ends the error (``give
    another output=DIR``). Every writer (build, calibrate, export-triton, profile) checks its
    folder so before any work."""
    folder = Path(folder)
    try:
        where = next(p for p in (folder, *folder.parents) if p.exists())
        if not where.is_dir():
            raise NotADirectoryError(0, f"{where} is a file, not a folder")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            where = folder
        fd, probe = tempfile.mkstemp(prefix=".densenet-trt-write-test-", dir=where)
        os.close(fd)
        os.unlink(probe)
        if not os.access(where, os.W_OK):
            raise PermissionError(0, "Permission denied")
    except OSError as e:
        raise DenseNetTRTError(f"cannot write in folder {str(folder)!r} ({e.strerror or e}); {fix}") from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, expected_bytes: int | None = None) -> Iterator[Path]:
    """A temporary path in the folder of ``path``; renamed to ``path`` when the block ends
    normally, removed when it raises (Ctrl-C included). The temporary keeps the suffix, for
    writers that choose the format by it, and is created with the umask's permissions.

    ``expected_bytes``: see ``check_free_space``. An ``OSError`` about the output (a full disk,
    a read-only or forbidden folder) is one ``DenseNetTRTError`` naming ``path``."""
    path = Path(path)
    tmp = _temporary(path, expected_bytes, folder=False)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        _failed(e, path, tmp, expected_bytes)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, *, expected_bytes: int | None = None) -> Iterator[Path]:
    """A temporary folder beside ``path``; it replaces ``path`` when the block ends normally
    (an existing ``path`` only with ``force``) and is removed when it raises, Ctrl-C included.

    The replacement is one step where Linux can (``exchange``): at every instant the old or the
    new folder is at ``path``. Elsewhere it takes two renames (see ``_two_renames``). The folder
    is created with the umask's permissions; ``expected_bytes`` and errors as in ``atomic_path``.
    Temporaries carry the process id: those a killed process left are removed by the next
    ``atomic_dir`` or ``atomic_path`` in the same folder."""
    path = Path(path)
    tmp = _temporary(path, expected_bytes, folder=True)
    try:
        yield tmp
        if not os.path.lexists(path):
            os.replace(tmp, path)
        elif not force:
            raise DenseNetTRTError(f"{path} exists; pass force=True to replace it")
        elif exchange(tmp, path):
            _remove(tmp)  # the old folder, now at the temporary name
        else:
            _two_renames(tmp, path)
    except BaseException as e:
        _failed(e, path, tmp, expected_bytes)
        raise


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap ``a`` and ``b`` (same filesystem) in one step with Linux's
    ``renameat2(RENAME_EXCHANGE)``; False, with nothing changed, where the system cannot: another
    OS, glibc before 2.28, a kernel or filesystem answering EINVAL, ENOSYS or EPERM."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), os.fspath(a), None, os.fspath(b))


@functools.cache
def _renameat2() -> Any:
    """libc's ``renameat2``, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def _two_renames(tmp: Path, path: Path) -> None:
    """Replace ``path`` by ``tmp`` where ``exchange`` cannot: ``path`` -> ``.NAME.old-PID-XXXX/NAME``,
    then ``tmp`` -> ``path``. Between the two no folder is at ``path``: an exception there (Ctrl-C)
    puts the old one back, and a process killed there leaves it for the next write in the
    folder to put back (``_remove_stale``)."""
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
    try:
        os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException:
        if not os.path.lexists(path) and os.path.lexists(old / path.name):
            os.replace(old / path.name, path)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _temporary(path: Path, expected_bytes: int | None, folder: bool) -> Path:
    """A new temporary folder or file beside ``path``, named ``.NAME.partial-PID-XXXXXXXX``
    (files keep their suffix) and with the permissions the umask gives, after removing the
    temporaries that dead processes left there and checking ``expected_bytes``."""
    try:
        _remove_stale(path.parent)
        if expected_bytes is not None:
            check_free_space(path.parent, expected_bytes)
        mask = os.umask(0)  # the only way to read it
        os.umask(mask)
        if folder:
            tmp = tempfile.mkdtemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent)
            os.chmod(tmp, 0o777 & ~mask)
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.partial-{os.getpid()}-", suffix=path.suffix,
                                       dir=path.parent)
            os.close(fd)
            os.chmod(tmp, 0o666 & ~mask)
        return Path(tmp)
    except OSError as e:
        raise _write_error(e, path, expected_bytes) or e


def _failed(e: BaseException, path: Path, tmp: Path, expected_bytes: int | None) -> None:
    """Remove ``tmp`` after the block writing ``path`` raised ``e``; raise instead the one-line
    error for ``e`` if it is about writing there (a full disk, a read-only folder)."""
    full = isinstance(e, RuntimeError) and _nearly_full(path.parent)  # torch.save's writer says only
    _remove(tmp)                                                       # "unexpected pos 576 vs 534"
    error = _no_space(path, expected_bytes, errno.ENOSPC) if full else None
    if isinstance(e, OSError):
        error = _write_error(e, path, expected_bytes)
    if error is not None:
        raise error from e


def _write_error(e: OSError, path: Path, expected_bytes: int | None) -> DenseNetTRTError | None:
    """The one-line error for ``e`` raised while writing ``path``; None if it is about another
    file (reading an input, say), which is left as it is."""
    if e.errno in _DISK_FULL:
        return _no_space(path, expected_bytes, e.errno)
    if e.errno is None or not (e.filename is None or _inside(e.filename, path.parent)):
        return None
    reason = (e.strerror or "")[:1].lower() + (e.strerror or "")[1:]
    fix = {errno.EACCES: "check the folder's permissions, or write elsewhere",
           errno.EPERM: "check the folder's permissions, or write elsewhere",
           errno.ENOENT: "create its folder first, or write elsewhere"}.get(e.errno, "write elsewhere")
    return DenseNetTRTError(f"cannot write {path}: {reason} ({errno.errorcode.get(e.errno, e.errno)}); {fix}")


def _no_space(path: Path, expected_bytes: int | None, code: int) -> DenseNetTRTError:
    what = "disk quota exceeded" if code == getattr(errno, "EDQUOT", None) else "no space left on device"
    try:
        now = f" ({shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there now)"
    except OSError:
        now = ""
    need = "space" if expected_bytes is None else f"{expected_bytes / 1e6:.1f} MB"
    return DenseNetTRTError(f"{what} writing {path}: free {need} there, or write elsewhere{now}")


def check_free_space(folder: str | os.PathLike, needed_bytes: int) -> None:
    """Refuse, before writing, when ``folder``'s filesystem has less free than ``needed_bytes``
    and a margin (a tenth more and 16 MB). For writers that cannot fail cleanly on a full disk:
    TorchScript's C++ writer aborts the process (``terminate called after throwing
    c10::Error``, exit 134) and leaves a partial file. Callers pass a generous estimate, e.g.
    twice the model's parameter bytes, as ``atomic_dir(..., expected_bytes=...)`` or
    ``atomic_path(..., expected_bytes=...)``, which call this."""
    free = shutil.disk_usage(folder).free
    margin = needed_bytes // 10 + _MARGIN_BYTES
    if free < needed_bytes + margin:
        raise DenseNetTRTError(
            f"not enough free space in {folder}: {free / 1e6:.1f} MB free, {needed_bytes / 1e6:.1f} MB "
            f"needed and a margin of {margin / 1e6:.1f} MB; free space there, or write elsewhere"
        )


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _FULL_BYTES
    except OSError:
        return False


def _inside(filename: Any, folder: Path) -> bool:
    try:
        return Path(os.fsdecode(filename)).resolve().is_relative_to(folder.resolve())
    except (OSError, TypeError, ValueError):
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _remove_stale(folder: Path) -> None:
    """Remove the temporaries in ``folder`` of processes that are gone (killed mid-write): the
    ``.NAME.partial-PID-XXXXXXXX`` of a PID that no longer runs, and its ``.NAME.old-PID-...``
    after putting the old folder back if nothing is at NAME. Those of running processes (a
    concurrent build) stay. A process id is only known on this machine: two machines or PID
    namespaces writing to one shared folder must not use the same folder at once."""
    if os.name != "posix":  # os.kill(pid, 0) tests a process only on POSIX
        return
    try:
        entries = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return
    for name in entries:
        match = _TEMPORARY.match(name)
        if match is None or _running(int(match["pid"])):
            continue
        stale = folder / name
        if match["kind"] == "old" and not os.path.lexists(folder / match["name"]):
            with contextlib.suppress(OSError):
                os.replace(stale / match["name"], folder / match["name"])
        _remove(stale)


def _running(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's process
        return True
    return True


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path, but: str) -> dict[str, str]:
    """sha256 of every file under ``folder`` but the one called ``but``."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != but
    }


def check_files(folder: Path, files: dict[str, str], fix: str, what: str) -> None:
    """Every file of ``files`` (name -> sha256) is in ``folder`` with that sha256, a regular
    file this process can read (``reading.input_file``; ``what`` says whose file it is)."""
    for name, digest in files.items():
        file = folder / name
        if not file.exists():
            raise DenseNetTRTError(f"{file} is missing; {fix}")
        if sha256_file(input_file(file, what)) != digest:
            raise DenseNetTRTError(
                f"{file} does not match its recorded sha256 (corrupt, truncated or modified); {fix}"
            )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def platform_name() -> str:
    """The operating system and CPU architecture, e.g. ``Linux-x86_64``: what compiled code
    (TensorRT plans, AOTInductor packages) is tied to."""
    return f"{platform.system()}-{platform.machine()}"


def device_info(device: str) -> dict:
    """The machine an engine is built for: platform, CPU model and cores; GPU name, compute
    capability, driver."""
    info: dict = {"type": device, "platform": platform_name(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
                  "gpu": None}
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        driver = None
        if shutil.which("nvidia-smi"):
            result = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i",
                 str(torch.cuda.current_device())],
                capture_output=True, text=True, check=False,
            )
            driver = result.stdout.strip() or None
        info["gpu"] = {
            "name": torch.cuda.get_device_name(),
            "compute_capability": f"{major}.{minor}",
            "driver": driver,
            "cuda": torch.version.cuda,
        }
    return info
