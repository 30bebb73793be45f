"""What every session export shares: its optional packages, an output that appears whole or not at all,
and a progress line on stderr.

The binary formats need packages the rest of the host does not (mcap, pyarrow): they are imported here,
when an export runs, so `host --help` stays fast, and their absence is one line that says what to install.
A directory output (a LeRobot dataset, one file per session) is built under a temporary name beside it
and renamed into place, as host/files.py does for a single file: a crash or Ctrl-C never leaves half of one.
"""

import importlib
import os
import shutil
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from host.errors import UserError

INSTALL = "pip install 'polyniod[export]'"
EXISTS = "{path} exists: give a new --out (an export never replaces anything)"


def need(module, fmt):
    """The module, imported; a UserError naming what to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but broken: show what is missing inside it
        raise UserError(f"{fmt} export needs {module.split('.')[0]}, which is not installed here: {INSTALL}") from None


def refuse_existing(path):
    """An export never replaces anything: a name that exists (other than a FIFO or a device, written into as a
    shell's `>` would) is a one-line error."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or os.path.islink(path):
        raise UserError(EXISTS.format(path=path))


@contextmanager
def new_directory(path):
    """A fresh directory to fill, renamed to `path` when the block ends cleanly; removed if it raises."""
    path = Path(path)
    if os.path.lexists(path):
        raise UserError(EXISTS.format(path=path))
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else "."))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        os.rename(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class Progress:
    """`export FORMAT: k/N frames (p %)` on stderr once an export has run a second: redrawn in place on a
    terminal, a line every 2 s otherwise; nothing at all for a quick one."""

    def __init__(self, what, total, stream=None, clock=time.monotonic):
        self.what, self.total, self.done = what, total, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.clock = clock
        self.start = self.last = clock()
        self.shown = False

    def add(self, n):
        self.done += n
        now = self.clock()
        if now - self.start < 1.0 or now - self.last < (0.1 if self.tty else 2.0):
            return
        self.last = now
        self._write(f"{self.what}: {self.done}/{self.total} frames ({100 * self.done / max(self.total, 1):.0f} %)")

    def close(self):
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _write(self, line):
        self.stream.write(("\r\x1b[K" + line) if self.tty else line + "\n")
        self.stream.flush()
        self.shown = True
