"""Files on disk (densenet_trt/engine/artifact.py): a replaced engine is never missing, interrupted or
killed builds leave nothing behind (or a partial the next write removes), written files honour
the umask, and a full or read-only disk is one line naming the path."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from densenet_trt.engine import artifact
from densenet_trt.engine.artifact import atomic_dir, atomic_path, check_free_space
from densenet_trt.errors import DenseNetTRTError
from helpers import mounted, umask

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"block_config": (2, 2, 2)}


def engine_folder(path: Path, content: str) -> None:
    path.mkdir()
    (path / "model.onnx").write_text(content)


def exchanges(folder: Path) -> bool:
    """Whether renameat2(RENAME_EXCHANGE) works in ``folder``."""
    (folder / ".probe-a").mkdir()
    (folder / ".probe-b").mkdir()
    try:
        return artifact.exchange(folder / ".probe-a", folder / ".probe-b")
    finally:
        (folder / ".probe-a").rmdir()
        (folder / ".probe-b").rmdir()


# --- 1. replacing a folder: the old or the new one is there at every instant -------------------

def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    engine_folder(tmp_path / "a", "A")
    engine_folder(tmp_path / "b", "B")
    if not artifact.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here; atomic_dir uses two renames")
    assert (tmp_path / "a" / "model.onnx").read_text() == "B"
    assert (tmp_path / "b" / "model.onnx").read_text() == "A"


def test_force_replaces_by_exchange_and_leaves_only_the_new_folder(tmp_path, monkeypatch):
    if not exchanges(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here; atomic_dir uses two renames")
    engine_folder(tmp_path / "engine", "old")

    def no_rename(*args):
        raise AssertionError(f"os.replace{args}: replacing should be one exchange")

    monkeypatch.setattr(os, "replace", no_rename)
    with atomic_dir(tmp_path / "engine", force=True) as tmp:
        (tmp / "model.onnx").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["engine"]
    assert (tmp_path / "engine" / "model.onnx").read_text() == "new"


def test_interrupted_while_removing_the_old_folder_the_new_one_is_in_place(tmp_path, monkeypatch):
    engine_folder(tmp_path / "engine", "old")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(artifact.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(tmp_path / "engine", force=True) as tmp:
            (tmp / "model.onnx").write_text("new")
    assert (tmp_path / "engine" / "model.onnx").read_text() == "new"


class Interrupt:
    """Patches the file operations atomic_dir uses; the ``n``-th call raises KeyboardInterrupt,
    ``before`` doing its work or after it, as a signal arriving there would."""

    def __init__(self, monkeypatch, n: int, before: bool, exchange: bool):
        self.n, self.before, self.calls = n, before, 0
        for owner, name in ((os, "replace"), (artifact.shutil, "rmtree"), (artifact, "exchange")):
            real = getattr(owner, name)
            if name == "exchange" and not exchange:
                real = lambda a, b: False  # renameat2 unavailable: the fallback
            monkeypatch.setattr(owner, name, self.wrap(real))

    def wrap(self, real):
        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.n and self.before:
                raise KeyboardInterrupt
            result = real(*args, **kwargs)
            if self.calls == self.n:
                raise KeyboardInterrupt
            return result
        return call


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_interrupted_at_any_step_of_a_replacement_the_target_holds_an_engine(tmp_path, monkeypatch, exchange):
    if exchange and not exchanges(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    for n in range(1, 10):
        for before in (True, False):
            folder = tmp_path / f"{n}-{before}"
            folder.mkdir()
            engine_folder(folder / "engine", "old")
            with monkeypatch.context() as m:
                interrupt = Interrupt(m, n, before, exchange)
                try:
                    with atomic_dir(folder / "engine", force=True) as tmp:
                        (tmp / "model.onnx").write_text("new")
                except KeyboardInterrupt:
                    pass
            assert (folder / "engine" / "model.onnx").read_text() in ("old", "new"), (n, before)
        if interrupt.calls < n:
            return  # every step has been interrupted
    pytest.fail("more steps than expected")


# --- 2. signals: Ctrl-C and SIGTERM clean up; a SIGKILLed build's partial goes at the next ------

def default_sigint() -> None:
    """Ctrl-C as a user's shell gives it: a background job of a non-interactive shell (how a CI
    script may start pytest) ignores SIGINT, and its children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_build(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "densenet_trt", "build", "--model", "densenet_bc100_k12", "--backend",
         "onnxruntime", "-o", str(out), "-q"],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )


def wait_for(condition, process: subprocess.Popen, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"the build ended (rc {process.returncode}) or took over {seconds} s first: {err}")
        time.sleep(0.05)


def partials(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if ".partial-" in p.name]


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_mid_build_leave_nothing_and_say_one_line(tmp_path, sig, status):
    """SIGTERM as soon as the partial folder appears, SIGINT a second later (capturing)."""
    build = start_build(tmp_path)
    wait_for(lambda: partials(tmp_path), build)
    if sig == signal.SIGINT:
        time.sleep(1)
    build.send_signal(sig)
    try:
        _, err = build.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        build.kill()
        pytest.fail(f"still running 20 s after {sig.name}")
    assert build.returncode == status, err
    assert err.strip().splitlines() == [f"error: interrupted by {sig.name}"], err
    assert list(tmp_path.iterdir()) == []


INTERRUPT_IN_EXEC = """
import click

echo = click.echo


def interrupted_echo(*args, **kwargs):
    click.echo = echo
    exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10 ** 8): pass")


click.echo = interrupted_echo
"""


def test_ctrl_c_inside_code_run_by_exec_still_exits_130(tmp_path):
    """CPython ends ``python -m`` by SIGINT (status -2, whatever sys.exit said) when a plain
    KeyboardInterrupt left code run by exec of a string, caught or not: the signal must arrive
    in the command as another exception. A real SIGINT, sent inside exec'd code (as it arrives
    inside dataclasses' or torch.fx's generated code during a build)."""
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_IN_EXEC)
    result = subprocess.run([sys.executable, "-m", "densenet_trt", "models"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}, timeout=120,
                            preexec_fn=default_sigint)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines() == ["error: interrupted by SIGINT"], result.stderr


def test_a_killed_builds_partial_folder_is_removed_by_the_next_build(tmp_path):
    import densenet_trt

    build = start_build(tmp_path)
    wait_for(lambda: partials(tmp_path), build)
    build.kill()
    build.wait(20)
    (left,) = partials(tmp_path)
    assert f".partial-{build.pid}-" in left.name
    densenet_trt.build("densenet_bc100_k12", backend="torchscript", batch="1", output=tmp_path,
                       overrides=SMALL, verify=False)
    assert [p.name for p in tmp_path.iterdir()] == ["densenet_bc100_k12-torchscript-fp32-b1-32"]


@pytest.fixture
def dead_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_dead_processes_go_and_those_of_live_ones_stay(tmp_path, dead_pid):
    live = subprocess.Popen(["sleep", "60"])
    try:
        names = {
            f".engine.partial-{dead_pid}-abcd1234": True,
            f".x.partial-{dead_pid}-abcd1234.onnx": True,
            f".engine.partial-{live.pid}-abcd1234": False,
            f".engine.partial-{os.getpid()}-abcd1234": False,
            ".engine.partial-abcd1234": False,  # not ours to judge: no process id
            f".notes.partial-{dead_pid}-x": False,  # not a name the tool makes
        }
        for name in names:
            (tmp_path / name).mkdir() if "onnx" not in name else (tmp_path / name).write_text("")
        with atomic_path(tmp_path / "report.md") as tmp:
            tmp.write_text("report")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["report.md", *[n for n, stale in names.items() if not stale]])
    finally:
        live.kill()
        live.wait()


def test_a_killed_two_rename_replacement_gets_the_old_engine_back(tmp_path, dead_pid):
    """Where renameat2 is missing, a replacement killed between its two renames leaves the old
    engine in .NAME.old-PID-XXXX; the next write in the folder puts it back."""
    old = tmp_path / f".engine.old-{dead_pid}-abcd1234"
    old.mkdir()
    engine_folder(old / "engine", "old")
    (tmp_path / f".engine.partial-{dead_pid}-abcd1234").mkdir()
    with atomic_path(tmp_path / "other.txt") as tmp:
        tmp.write_text("other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine", "other.txt"]
    assert (tmp_path / "engine" / "model.onnx").read_text() == "old"


def test_temporary_names_carry_the_process_id(tmp_path):
    with atomic_dir(tmp_path / "engine") as tmp:
        assert tmp.name.startswith(f".engine.partial-{os.getpid()}-")
    with atomic_path(tmp_path / "model.onnx") as tmp:
        assert tmp.name.startswith(f".model.partial-{os.getpid()}-") and tmp.suffix == ".onnx"


# --- 3. permissions follow the umask ----------------------------------------------------------

def modes(folder: Path) -> set[tuple[str, int]]:
    return {(p.name, p.stat().st_mode & 0o777) for p in [folder, *folder.rglob("*")]}


@pytest.mark.parametrize("mask, folders, files", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)],
                         ids=["022", "077"])
def test_a_built_engine_and_an_export_honour_the_umask(tmp_path, mask, folders, files):
    import densenet_trt
    from densenet_trt.engine.export import export_model
    from densenet_trt.model.registry import create_model

    # torchscript: the fastest to build and to export; every backend and format writes through atomic_dir/atomic_path
    with umask(mask):
        engine = densenet_trt.build("densenet_bc100_k12", backend="torchscript", batch="1", output=tmp_path,
                                    overrides=SMALL, verify=False).path
        export_model(create_model("densenet_bc100_k12", **SMALL), "torchscript", tmp_path / "x.ts", image_size=32)
    assert modes(engine) == {(engine.name, folders), ("model.ts", files), ("manifest.json", files)}
    assert (tmp_path / "x.ts").stat().st_mode & 0o777 == files


def test_atomic_path_and_atomic_dir_honour_the_umask(tmp_path):
    with umask(0o027):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("a")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("f")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750


# --- 4. a full or read-only disk is one line naming the path ----------------------------------

@pytest.fixture
def full(tmp_path):
    with mounted(tmp_path / "small", "size=2m") as folder:
        yield folder


@pytest.fixture
def read_only(tmp_path):
    with mounted(tmp_path / "ro", "ro,size=1m") as folder:
        yield folder


def test_disk_full_in_atomic_path_is_one_line_and_leaves_nothing(full):
    with pytest.raises(DenseNetTRTError) as e, atomic_path(full / "big.bin") as tmp:
        tmp.write_bytes(os.urandom(3 << 20))
    message = str(e.value)
    assert message.startswith(f"no space left on device writing {full / 'big.bin'}: ") and "\n" not in message
    assert "write elsewhere" in message
    assert list(full.iterdir()) == []


def test_disk_full_in_atomic_dir_is_one_line_and_leaves_nothing(full):
    with pytest.raises(DenseNetTRTError, match=f"no space left on device writing {full / 'engine'}: "):
        with atomic_dir(full / "engine") as tmp:
            for n in range(3):
                (tmp / f"part{n}").write_bytes(os.urandom(1 << 20))
    assert list(full.iterdir()) == []


def test_disk_full_during_an_onnx_export_is_one_line(full):
    from densenet_trt.engine.export import export_model
    from densenet_trt.model.registry import create_model

    # export_model checks the free space against the model's size before writing.
    with pytest.raises(DenseNetTRTError, match="not enough free space in .* MB free"):
        export_model(create_model("densenet_bc100_k12"), "onnx", full / "x.onnx", image_size=32)
    assert list(full.iterdir()) == []


def test_check_free_space_refuses_naming_both_numbers(tmp_path):
    free = artifact.shutil.disk_usage(tmp_path).free
    check_free_space(tmp_path, 1 << 20)
    with pytest.raises(DenseNetTRTError) as e:
        check_free_space(tmp_path, free * 2)
    message = str(e.value)
    assert f"not enough free space in {tmp_path}: " in message
    assert f"{free / 1e6:.1f} MB free" in message and f"{free * 2 / 1e6:.1f} MB" in message


def test_expected_bytes_refuses_before_writing_anything(tmp_path):
    huge = artifact.shutil.disk_usage(tmp_path).free * 2
    for writer in (atomic_path(tmp_path / "x.pt", expected_bytes=huge),
                   atomic_dir(tmp_path / "engine", expected_bytes=huge)):
        with pytest.raises(DenseNetTRTError, match="not enough free space"):
            with writer:
                pytest.fail("the block ran")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_in_a_small_tmpfs_is_refused_by_expected_bytes(full):
    with pytest.raises(DenseNetTRTError, match=r"MB free, .* needed"):
        with atomic_path(full / "model.pt", expected_bytes=3 << 20):
            pytest.fail("the block ran")


@pytest.mark.parametrize("writer", ["atomic_path", "atomic_dir"])
def test_a_read_only_folder_is_one_line_naming_the_path(read_only, writer):
    target = read_only / ("x.onnx" if writer == "atomic_path" else "engine")
    with pytest.raises(DenseNetTRTError) as e, getattr(artifact, writer)(target):
        pytest.fail("the block ran")
    assert str(e.value) == f"cannot write {target}: read-only file system (EROFS); write elsewhere"


def test_other_os_errors_inside_the_block_name_the_path(tmp_path):
    with pytest.raises(DenseNetTRTError, match=f"cannot write {tmp_path / 'x.bin'}: .*EIO"):
        with atomic_path(tmp_path / "x.bin"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    assert list(tmp_path.iterdir()) == []


def test_os_errors_about_other_files_are_left_as_they_are(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x.bin"):
        Path("/nonexistent/input.npz").read_bytes()
    assert list(tmp_path.iterdir()) == []


def test_torch_save_to_a_full_disk(full):
    """torch.save's zip writer raises a RuntimeError ("unexpected pos 576 vs 534") on a full
    disk; written through atomic_path it is the one line about space."""
    with pytest.raises(DenseNetTRTError, match="no space left on device"):
        with atomic_path(full / "w.pt") as tmp:
            torch.save(torch.zeros(1 << 20), tmp)
    assert list(full.iterdir()) == []
