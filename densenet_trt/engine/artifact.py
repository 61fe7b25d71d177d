"""Files on disk: written whole or not at all, and checked by their sha256."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import io
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from ..errors import DenseNetTRTError
from ..reading import input_file

_AT_FDCWD = -100  # Linux's "relative to the working folder"
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_MARGIN_BYTES = 16 << 20
_FULL_BYTES = 1 << 20  # less free than this after a writer failed: the disk is full
# The temporaries atomic_dir and atomic_path make: .NAME.partial-PID-XXXXXXXX[.SUFFIX] and
# .NAME.old-PID-XXXXXXXX (tempfile's 8 random characters).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>[0-9]+)-[a-z0-9_]{8}(?:\.[^.]*)?$")


STDOUT = "-"  # an output named so goes to standard output
# A file system's 255-byte names less the temporaries' additions: '.', '.partial-', a process id
# (up to 7 digits), '-' and 8 random characters.
MAX_NAME_BYTES = 255 - 26


def check_output(path: str | os.PathLike, force: bool = False) -> Path | None:
    """The output rule for a file any command writes; ``path`` as a Path, or None for ``-``
    (standard output). Refused whatever ``force`` says: an empty name, a name ending in ``/``,
    a folder, a symbolic link (never written through: ``/dev/stdout`` is one) or a special file
    (a device, pipe or socket); an existing file without ``force``; a missing folder."""
    text = os.fspath(path)
    if text == STDOUT:
        return None
    if not text:
        raise DenseNetTRTError("the output file name is empty: give a file name, or - for standard output")
    if text.endswith((os.sep, os.altsep or os.sep)):
        raise DenseNetTRTError(f"{text} ends in '/', a folder: give a file name")
    path = Path(text)
    if path.is_symlink():
        raise DenseNetTRTError(f"{path} is a symbolic link, which densenet-trt never writes through: "
                               "give the file's own path, or - for standard output")
    if path.is_dir():
        raise DenseNetTRTError(f"{path} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise DenseNetTRTError(f"{path} is not a regular file (a device, pipe or socket): give a file, "
                               "or - for standard output")
    if path.exists() and not force:
        raise DenseNetTRTError(f"{path} exists; pass force=True to overwrite it")
    if not path.parent.is_dir():
        raise DenseNetTRTError(f"folder {str(path.parent)!r} for {path.name} does not exist")
    return path


def check_outputs(outputs: dict[str, str | os.PathLike], *, force: bool = False,
                  inputs: Iterable[tuple[str, str | os.PathLike]] = ()) -> dict[str, Path | None]:
    """``check_output`` for each of one command's ``outputs`` (by the parameter that names it),
    and then: no two name the same file (``-`` included), and none is one of the command's
    ``inputs`` (``(parameter, path)`` pairs) or a file inside an input folder, even with
    ``force``; and each folder takes a new file (checked by making one: permission bits do not
    stop root). Returns the checked paths."""
    inputs = [(name, Path(p)) for name, p in inputs if os.path.lexists(p)]
    checked, seen = {}, {}
    for name, value in outputs.items():
        _check_not_input(name, value, inputs)
        checked[name] = check_output(value, force)
        if checked[name] is not None:
            writable_folder(checked[name].parent, "write elsewhere", create=False)
        key = STDOUT if checked[name] is None else os.path.realpath(checked[name])
        if key in seen:
            raise DenseNetTRTError(f"{seen[key]} and {name}={value} name the same file: give each output its own")
        seen[key] = f"{name}={value}"
    return checked


def _check_not_input(name: str, value: str | os.PathLike, inputs: list[tuple[str, Path]]) -> None:
    if os.fspath(value) in ("", STDOUT) or not os.path.lexists(value):
        return
    target = Path(os.path.realpath(value))
    for input_name, source in inputs:
        real = Path(os.path.realpath(source))
        if target == real or (real.is_dir() and target.is_relative_to(real)):
            raise DenseNetTRTError(f"{name}={value} is {'inside ' if target != real else ''}an input of this "
                                   f"command ({input_name}={source}), which is never overwritten: write elsewhere")


def entry_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder/name`` for an output ``name`` that is one plain folder name: anything that
    could reach outside ``folder`` or replace ``folder`` itself (``.``, ``..``, ``a/b``, an
    absolute path) is refused, as are names starting with ``.``, which the tool's temporary
    folders use, and names longer than ``MAX_NAME_BYTES`` (the temporary beside it adds
    ``.NAME.partial-PID-XXXXXXXX`` to a file system's 255 bytes)."""
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
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise DenseNetTRTError(f"name {name[:20]}... is {len(os.fsencode(name))} bytes long; give a name of at most "
                               f"{MAX_NAME_BYTES} bytes")
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
        with tempfile.TemporaryFile(dir=where):  # nameless (O_TMPFILE): Ctrl-C or SIGTERM here leaves nothing
            pass
        if not os.access(where, os.W_OK):
            raise PermissionError(0, "Permission denied")
    except OSError as e:
        raise DenseNetTRTError(f"cannot write in folder {str(folder)!r} ({e.strerror or e}); {fix}") from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = False, expected_bytes: int | None = None) -> Iterator[Path]:
    """A temporary path in the folder of ``path``; renamed to ``path`` when the block ends
    normally, removed when it raises (Ctrl-C included). ``path`` must pass ``check_output``; a
    file that appears there while the block runs is not replaced without ``force``. ``-``:
    the file goes to standard output when the block ends. The temporary keeps the suffix, for
    writers that choose the format by it, and is created with the umask's permissions.

    ``expected_bytes``: see ``check_free_space``. An ``OSError`` about the output (a full disk,
    a read-only or forbidden folder) is one ``DenseNetTRTError`` naming ``path``."""
    checked = check_output(path, force)
    if checked is None:
        with _to_stdout(Path(os.fspath(path)).suffix) as tmp:
            yield tmp
        return
    tmp = _temporary(checked, expected_bytes, folder=False)
    try:
        yield tmp
        _rename(tmp, checked, force)
    except BaseException as e:
        _failed(e, checked, tmp, expected_bytes)
        raise


@contextlib.contextmanager
def _to_stdout(suffix: str) -> Iterator[Path]:
    """A temporary file whose bytes go to standard output when the block ends normally."""
    with tempfile.TemporaryDirectory(prefix="densenet-trt-") as folder:
        tmp = Path(folder) / f"stdout{suffix}"
        yield tmp
        stream = sys.stdout.buffer
        stream.write(tmp.read_bytes())
        stream.flush()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False, *, expected_bytes: int | None = None) -> Iterator[Path]:
    """A temporary folder beside ``path``; it replaces ``path`` when the block ends normally
    (an existing ``path`` only with ``force``, and only where the old one can be removed) and is
    removed when it raises, Ctrl-C included.

    The replacement is one step where Linux can (``exchange``): at every instant the old or the
    new folder is at ``path``. Elsewhere it takes two renames (see ``_two_renames``). The folder
    is created with the umask's permissions; ``expected_bytes`` and errors as in ``atomic_path``.
    Temporaries carry the process id: those a killed process left are removed by the next
    ``atomic_dir`` or ``atomic_path`` in the same folder."""
    path = Path(path)
    if force and os.path.lexists(path):
        _check_removable(path)
    tmp = _temporary(path, expected_bytes, folder=True)
    try:
        yield tmp
        if not force:
            if os.path.lexists(path):
                raise DenseNetTRTError(f"{path} exists; pass force=True to replace it")
            _rename(tmp, path, replace=False)
        elif not os.path.lexists(path):
            os.replace(tmp, path)
        elif exchange(tmp, path):
            _remove_old(tmp, path)  # the old folder, now at the temporary name
        else:
            _two_renames(tmp, path)
    except BaseException as e:
        _failed(e, path, tmp, expected_bytes)
        raise


def _check_removable(path: Path) -> None:
    """Refuse, before any work, to replace ``path`` where its old content could not be removed
    afterwards: a folder inside it that is read-only (permission bits, for users; a read-only
    file system, for root too) or a mount point."""
    if path.is_symlink() or not path.is_dir():
        raise DenseNetTRTError(f"{path} is not a folder densenet-trt wrote (a file or a link); "
                               "remove it yourself, or choose another name")
    for folder, subfolders, _ in os.walk(path):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise DenseNetTRTError(f"cannot replace {path}: {folder} is read-only, so its old content "
                                   "could not be removed; fix its permissions, or choose another name")
        for name in subfolders:
            if os.path.ismount(os.path.join(folder, name)):
                raise DenseNetTRTError(f"cannot replace {path}: {os.path.join(folder, name)} is a mount point; "
                                       "unmount it, or choose another name")


def _remove_old(old: Path, path: Path) -> None:
    """Remove the replaced folder, now at ``old``; where something made after
    ``_check_removable`` stops that, the new ``path`` stays and the error names what is left."""
    try:
        shutil.rmtree(old)
    except OSError as e:
        raise DenseNetTRTError(f"replaced {path}, but its old content left at {old} could not be removed "
                               f"({e.strerror or e}): remove it yourself") from None


def _rename(tmp: Path, path: Path, replace: bool) -> None:
    """``tmp`` -> ``path``: with ``replace``, over what is there; else only where nothing is,
    in one step (``renameat2(RENAME_NOREPLACE)``, or a hard link for files where the system
    has no such rename), so that a file another program made meanwhile is never replaced."""
    if replace:
        os.replace(tmp, path)
        return
    renameat2 = _renameat2()
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(path), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise _appeared(path)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
            raise OSError(code, os.strerror(code), os.fspath(tmp), None, os.fspath(path))
    if tmp.is_dir():
        if os.path.lexists(path):
            raise _appeared(path)
        os.rename(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _appeared(path) from None
    os.unlink(tmp)


def _appeared(path: Path) -> DenseNetTRTError:
    return DenseNetTRTError(f"{path} appeared while this command ran (another program made it) and was "
                            "not overwritten; pass force=True to overwrite it, or write elsewhere")


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
    and a margin (a tenth more and 16 MB): a full disk is said before the work, not after it.
    Callers pass a generous estimate, e.g. twice the model's parameter bytes, as
    ``atomic_dir(..., expected_bytes=...)`` or ``atomic_path(..., expected_bytes=...)``, which
    call this. The disk can still fill up while writing (another program writes there): see
    ``save_via_memory``."""
    free = shutil.disk_usage(folder).free
    margin = needed_bytes // 10 + _MARGIN_BYTES
    if free < needed_bytes + margin:
        raise DenseNetTRTError(
            f"not enough free space in {folder}: {free / 1e6:.1f} MB free, {needed_bytes / 1e6:.1f} MB "
            f"needed and a margin of {margin / 1e6:.1f} MB; free space there, or write elsewhere"
        )


def save_via_memory(save: Callable[[Any, BinaryIO], None], obj: Any, path: str | os.PathLike) -> None:
    """``save(obj, file)`` into memory, then its bytes written to ``path`` by Python. For
    torch.jit.save and torch.export.save, whose C++ zip writer aborts the process when the disk
    fills up under it (``terminate called after throwing c10::Error``, SIGABRT, a partial file
    left); Python's write raises OSError ENOSPC, which ``atomic_dir`` and ``atomic_path`` turn
    into one line, removing the partial file."""
    buffer = io.BytesIO()
    save(obj, buffer)
    Path(path).write_bytes(buffer.getbuffer())


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

