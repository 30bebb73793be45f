"""Files written whole or not at all, without clobbering what the name stands for.

- A regular file (or a new name): a temp file in the same directory, then a rename over it. A crash,
  a full disk or Ctrl-C mid-write leaves the old file (or none), never half of a new one; the old
  file's permissions are kept.
- A symlink: written through, to its target, as above (the link stays a link; a dangling link gets
  its target created).
- A FIFO, a character device (/dev/null, /dev/full, a tty): written directly, as a shell's `>`
  would; they cannot be renamed over. A FIFO nobody reads is refused at once instead of blocking.
- `-` (where a command allows it): standard output.

Every failure is a one-line UserError that names the file."""

import errno
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from host.errors import UserError

STDOUT = "-"


def _fail(path, e):
    if isinstance(e, OSError) and e.errno == errno.ENXIO:
        return UserError(f"cannot write {path}: nothing is reading that FIFO (start its reader first, then retry)")
    if isinstance(e, OSError) and e.errno == errno.EISDIR:
        return UserError(f"cannot write {path}: it is a directory (give a file name)")
    return UserError(f"cannot write {path}: {getattr(e, 'strerror', None) or e}")


@contextmanager
def atomic_file(path, mode="w", stdout_ok=True):
    """An open file for `path` (see the module's doc for what each kind of name gets); closed, and for a
    regular file renamed into place, when the block ends cleanly; removed if it raises.

    path "-": standard output (unless stdout_ok is False). Errors the disk raises become one-line UserErrors."""
    if str(path) == STDOUT:
        if not stdout_ok:
            raise UserError("cannot write this to standard output (-): give a file name")
        with _stdout(mode) as f:
            yield f
        return
    path = Path(path)
    target = Path(os.path.realpath(path))  # through symlinks (a dangling one: the name it points at)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:  # a symlink loop, a directory we may not search
        raise _fail(path, e) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UserError(f"cannot write {path}: it is a directory (give a file name)")
    if st is not None and not stat.S_ISREG(st.st_mode):
        with _direct(path, target, mode) as f:
            yield f
        return
    with _replace(path, target, mode, st) as f:
        yield f


@contextmanager
def _replace(path, target, mode, st):
    """A temp file beside `target`, renamed over it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _fail(path, e) from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else 0o644)
        os.replace(tmp, target)
    except OSError as e:
        raise _fail(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _direct(path, target, mode):
    """A FIFO or device, opened for writing without blocking on a FIFO with no reader (ENXIO), then
    switched back to blocking writes (a slow reader is waited for, as by any writer)."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _fail(path, e) from None
    try:
        os.set_blocking(fd, True)
        f = os.fdopen(fd, mode)
    except OSError as e:
        os.close(fd)
        raise _fail(path, e) from None
    try:
        with f:
            yield f
    except OSError as e:  # a write, or the flush on close: ENOSPC on /dev/full, EPIPE when the reader left
        raise _fail(path, e) from None


@contextmanager
def _stdout(mode):
    f = sys.stdout.buffer if "b" in mode else sys.stdout
    try:
        sys.stdout.flush()
        yield f
        f.flush()
    except BrokenPipeError:
        _quiet_stdout()
        raise UserError("standard output was closed before everything was written (the reader left)") from None
    except OSError as e:
        raise UserError(f"cannot write to standard output: {e.strerror or e}") from None


def _quiet_stdout():
    """After EPIPE: stdout to /dev/null, so Python's own flush at exit does not complain again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def write_atomic(path, data):
    """Write bytes or str to `path` whole or not at all."""
    with atomic_file(path, "wb" if isinstance(data, (bytes, bytearray)) else "w") as f:
        f.write(data)
    return Path(path)


def plain(value):
    """json.dumps' `default`: a read-only mapping (a Hello) as the object it holds, anything else as text."""
    return dict(value) if isinstance(value, Mapping) else str(value)


def write_json(path, data):
    return write_atomic(path, json.dumps(data, indent=1, default=plain) + "\n")


def save_figure(fig, path, dpi=90):
    """A matplotlib figure as PNG at `path` (as atomic_file treats names; not `-`); the figure is closed."""
    import matplotlib.pyplot as plt

    try:
        with atomic_file(path, "wb", stdout_ok=False) as f:
            fig.savefig(f, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return Path(path)
