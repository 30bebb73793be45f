"""Running virtual Gen0s leave a note here so `host ports` can list them.

One small JSON file per running simulator, named by its pid; notes of
processes that no longer exist are ignored and cleaned up. A note holds pid,
port, link and what the supervisor adds (seed, flash_dir, cpu, and faults: the
wiring faults the board was built with, e.g. ["stuck-joint:elbow"], [] if none).
"""

import json
import os
import tempfile
from pathlib import Path


def _dir():
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / "polyniod-sims"


def register(port, link=None, **info):
    """Announce a running virtual Gen0 (written atomically)."""
    d = _dir()
    d.mkdir(parents=True, exist_ok=True)
    note = {"pid": os.getpid(), "port": port, "link": link, **info}
    tmp = d / f".{os.getpid()}.{id(note)}.tmp"
    tmp.write_text(json.dumps(note))
    path = d / f"{os.getpid()}-{Path(port).name}.json"
    tmp.replace(path)
    return path


def unregister(path):
    try:
        Path(path).unlink()
    except (FileNotFoundError, TypeError):
        pass


def running():
    """Notes of the virtual Gen0s whose process is alive and whose port still exists."""
    d = _dir()
    notes = []
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            note = json.loads(path.read_text())
            alive = _alive(note["pid"]) and os.path.exists(note["port"])
        except (ValueError, KeyError, OSError):
            alive = False
        if alive:
            notes.append(note)
        else:
            unregister(path)
    return notes


def find(port):
    """The note of the virtual Gen0 behind `port` (its pty or its --link), or None."""
    real = os.path.realpath(port)
    for note in running():
        if real in (os.path.realpath(note["port"]), os.path.realpath(note.get("link") or note["port"])):
            return note
    return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
