"""Files written whole or not at all: a temp file in the same directory, then a rename over the name.

A crash, a full disk or Ctrl-C mid-write leaves the old file (or none), never half of a new one."""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from host.errors import UserError


@contextmanager
def atomic_file(path, mode="w"):
    """An open temp file beside `path`, renamed over it when the block ends cleanly, removed otherwise.

    Errors the disk raises become one-line UserErrors."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path, data):
    """Write bytes or str to `path` whole or not at all."""
    with atomic_file(path, "wb" if isinstance(data, (bytes, bytearray)) else "w") as f:
        f.write(data)
    return Path(path)


def write_json(path, data):
    return write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def save_figure(fig, path, dpi=90):
    """A matplotlib figure as PNG at `path`, whole or not at all; the figure is closed."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path
